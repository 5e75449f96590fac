//! Text analysis for the `analyze` step: line and word counts and the most frequent terms.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// How many terms [`analyze`] reports.
pub const TOP_TERMS: usize = 10;

/// Words too common to say anything about a document; left out of the top terms.
pub const STOP_WORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "from", "has", "have", "he", "her", "his", "i",
    "if", "in", "into", "is", "it", "its", "not", "of", "on", "or", "our", "she", "so", "such", "than", "that", "the",
    "their", "them", "then", "there", "these", "they", "this", "those", "to", "was", "we", "were", "which", "will",
    "with", "you", "your",
];

/// A term and how often it occurs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TermCount {
    /// The term, lower-cased, letters only.
    pub term: String,
    /// Occurrences in the document.
    pub count: usize,
}

/// What the `analyze` step finds in a document (its output).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Analysis {
    /// Lines, as [`str::lines`] counts them (a final line without a newline counts).
    pub lines: usize,
    /// Whitespace-separated words.
    pub words: usize,
    /// The [`TOP_TERMS`] most frequent terms, most frequent first, ties in alphabetical order.
    pub top_terms: Vec<TermCount>,
}

/// Analyses `text`.
///
/// Terms are the maximal runs of letters (any script), lower-cased, that are not in
/// [`STOP_WORDS`]: `"Don't"` gives `don` and `t`, `"GPL-3"` gives `gpl`.
///
/// ```
/// let a = baton_examples::analyze("The cat sat.\nThe cat ran!\n");
/// assert_eq!((a.lines, a.words), (2, 6));
/// assert_eq!(a.top_terms[0].term, "cat");
/// assert_eq!(a.top_terms[0].count, 2);
/// ```
pub fn analyze(text: &str) -> Analysis {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for raw in text.split(|c: char| !c.is_alphabetic()).filter(|t| !t.is_empty()) {
        let term = raw.to_lowercase();
        if !STOP_WORDS.contains(&term.as_str()) {
            *counts.entry(term).or_default() += 1;
        }
    }
    let mut terms: Vec<TermCount> = counts
        .into_iter()
        .map(|(term, count)| TermCount { term, count })
        .collect();
    terms.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.term.cmp(&b.term)));
    terms.truncate(TOP_TERMS);
    Analysis {
        lines: text.lines().count(),
        words: text.split_whitespace().count(),
        top_terms: terms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms(a: &Analysis) -> Vec<(&str, usize)> {
        a.top_terms.iter().map(|t| (t.term.as_str(), t.count)).collect()
    }

    #[test]
    fn counts_lines_words_and_terms() {
        let text = "Permission is hereby granted, free of charge,\n\
                    to any person obtaining a copy of this software.\n\
                    \n\
                    THE SOFTWARE IS PROVIDED \"AS IS\", without warranty; software-wise: free!\n";
        let a = analyze(text);
        assert_eq!(a.lines, 4);
        assert_eq!(a.words, 26);
        assert_eq!(terms(&a)[..3], [("software", 3), ("free", 2), ("any", 1)], "{a:?}");
        assert!(a.top_terms.iter().all(|t| !STOP_WORDS.contains(&t.term.as_str())));
        assert!(a.top_terms.iter().all(|t| t.term.chars().all(char::is_lowercase)));
    }

    #[test]
    fn keeps_the_ten_most_frequent_with_ties_alphabetical() {
        // bb once, cc twice, ... kk ten times, ll and mm eleven times each.
        let mut text = String::new();
        for (i, w) in ["bb", "cc", "dd", "ee", "ff", "gg", "hh", "ii", "jj", "kk", "ll", "mm"]
            .iter()
            .enumerate()
        {
            for _ in 0..=i.min(10) {
                text.push_str(w);
                text.push(' ');
            }
        }
        let a = analyze(&text);
        assert_eq!(a.top_terms.len(), TOP_TERMS);
        assert_eq!(terms(&a)[0], ("ll", 11));
        assert_eq!(terms(&a)[1], ("mm", 11), "ties sort alphabetically");
        assert_eq!(terms(&a)[9], ("dd", 3));
    }

    #[test]
    fn letters_only_any_script_lower_cased() {
        let a = analyze("Don't GPL-3 Ünïcödé über-cool 42 e=mc2");
        let got: Vec<&str> = a.top_terms.iter().map(|t| t.term.as_str()).collect();
        for expected in ["don", "t", "gpl", "ünïcödé", "über", "cool", "e", "mc"] {
            assert!(got.contains(&expected), "{expected} missing from {got:?}");
        }
        assert_eq!(a.words, 6);
        assert_eq!(a.lines, 1);
    }

    #[test]
    fn empty_text() {
        let a = analyze("");
        assert_eq!(
            a,
            Analysis {
                lines: 0,
                words: 0,
                top_terms: vec![]
            }
        );
        assert_eq!(analyze("no newline at the end").lines, 1);
    }
}
