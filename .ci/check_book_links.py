"""Checks the links of the built Baton book (mdBook's HTML in BOOK_DIR, target/book by default).

First it points links that leave the book at the repository's files: a chapter's link
`../examples/x.yaml` (right on GitHub and in an editor, where the chapter sits in docs/) becomes
`../../examples/x.yaml` (right from target/book/, wherever the book is built), and mdBook's `.html` for such a link to a
Markdown file (`../deploy/README.html`) goes back to `.md`. Then every relative `href` and `src` of
every page must name a file that exists, and every `#fragment` into an HTML page an `id` (or
`name`) in it. Exits 1 listing each broken link with its page; prints how many links it checked.

Standard library only, so it runs before any virtualenv exists:

    python3 .ci/check_book_links.py [BOOK_DIR]
"""

from __future__ import annotations

import html.parser
import os
import pathlib
import re
import sys
import urllib.parse

BOOK = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/book").resolve()
REPO = pathlib.Path(__file__).resolve().parent.parent
# The repository seen from the book's pages (`../../` from target/book/).
TO_REPO = os.path.relpath(REPO, BOOK).replace(os.sep, "/") + "/"
# mdBook's own pages and assets that are not chapters.
SKIP_PAGES = {"print.html", "toc.html", "404.html"}


class Page(html.parser.HTMLParser):
    """The ids of a page and its relative links (href and src)."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value is None:
                continue
            if name in ("id", "name"):
                self.ids.add(value)
            elif name in ("href", "src") and not re.match(r"^[a-z][a-z0-9+.-]*:|^/", value):
                self.links.append(value)


def outside_to_repo(text: str) -> str:
    """Rewrites the links of a top-level page that leave the book to the repository's files."""

    def fix(m: re.Match[str]) -> str:
        attr, path, rest = m.group(1), m.group(2), m.group(3)
        if path.endswith(".html") and (REPO / path.removesuffix(".html")).with_suffix(".md").exists():
            path = path.removesuffix(".html") + ".md"
        return f'{attr}="{TO_REPO}{path}{rest}"'

    return re.sub(r'(href|src)="\.\./([^"#?]*)([^"]*)"', fix, text)


def main() -> int:
    if not (BOOK / "index.html").exists():
        print(f"check_book_links: no book at {BOOK} (run mdbook build docs first)", file=sys.stderr)
        return 1
    pages: dict[pathlib.Path, Page] = {}
    for path in sorted(BOOK.rglob("*.html")):
        text = path.read_text(encoding="utf-8")
        if path.parent == BOOK:
            fixed = outside_to_repo(text)
            if fixed != text:
                path.write_text(fixed, encoding="utf-8")
                text = fixed
        page = Page()
        page.feed(text)
        pages[path] = page

    broken: list[str] = []
    checked = 0
    for path, page in pages.items():
        if path.name in SKIP_PAGES or path.relative_to(BOOK).parts[0] in ("FontAwesome", "fonts"):
            continue
        for link in page.links:
            target, _, fragment = link.partition("#")
            target = urllib.parse.unquote(target.split("?", 1)[0])
            dest = (path.parent / target).resolve() if target else path
            checked += 1
            where = f"{path.relative_to(BOOK)}: {link}"
            if not dest.exists():
                broken.append(f"{where}: no such file {dest}")
                continue
            if fragment and dest.suffix == ".html":
                ids = pages[dest].ids if dest in pages else set()
                if urllib.parse.unquote(fragment) not in ids:
                    broken.append(f"{where}: no anchor #{fragment} in {dest.name}")
    for b in broken:
        print(f"broken link: {b}", file=sys.stderr)
    print(f"check_book_links: {checked} links in {len(pages)} pages, {len(broken)} broken")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
