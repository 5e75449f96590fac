// Draws a laid-out DAG: edges in SVG, steps as real buttons (keyboard-focusable) on top of it,
// each filled with its status colour and labelled with its status in words.
import { useMemo } from "preact/hooks";
import { layoutSteps, type GraphStep } from "../graph";
import { statusColour, statusWord } from "../status";

export function Graph(props: {
  steps: GraphStep[];
  status?: Record<string, string>;
  /** Extra line per step (e.g. fan-out progress). */
  note?: Record<string, string>;
  selected?: string;
  onSelect?: (id: string) => void;
  label: string;
}) {
  const layout = useMemo(() => layoutSteps(props.steps), [JSON.stringify(props.steps)]);
  return (
    <div class="graph" role="group" aria-label={props.label} style={{ width: `${layout.width}px`, height: `${layout.height}px` }}>
      <svg width={layout.width} height={layout.height} aria-hidden="true">
        <defs>
          <marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">
            <path d="M 0 0 L 10 5 L 0 10 z" fill="#4b5563" />
          </marker>
        </defs>
        {layout.edges.map((e) => (
          <polyline
            key={`${e.from}->${e.to}`}
            points={e.points.map((p) => `${p.x},${p.y}`).join(" ")}
            fill="none"
            stroke="#4b5563"
            stroke-width="1.5"
            marker-end="url(#arrow)"
          />
        ))}
      </svg>
      {layout.nodes.map((n) => {
        const st = props.status?.[n.id];
        const c = statusColour(st ?? "");
        const word = st ? statusWord(st) || "unknown" : "";
        return (
          <button
            type="button"
            key={n.id}
            class={`node${props.selected === n.id ? " selected" : ""}`}
            data-step={n.id}
            data-status={word}
            aria-pressed={props.selected === n.id}
            style={{
              left: `${n.x - n.width / 2}px`,
              top: `${n.y - n.height / 2}px`,
              width: `${n.width}px`,
              height: `${n.height}px`,
              background: c.fill,
              borderColor: c.border,
            }}
            onClick={() => props.onSelect?.(n.id)}
          >
            <strong>{n.id}</strong>
            <span>{[word.replace("_", " "), props.note?.[n.id] ?? n.sub].filter(Boolean).join(" · ")}</span>
          </button>
        );
      })}
    </div>
  );
}
