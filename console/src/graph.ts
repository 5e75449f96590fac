// A workflow's steps as a DAG laid out by dagre: the pure input (nodes, edges, sizes) is built
// here and tested; the drawing is src/views/Graph.tsx.
import dagre from "@dagrejs/dagre";
import { statusWord } from "./status";

export interface GraphStep {
  id: string;
  dependsOn: string[];
  /** Second line of the box (kind or handler). */
  sub?: string;
}

export interface LaidNode {
  id: string;
  x: number;
  y: number;
  width: number;
  height: number;
  sub?: string;
}

export interface LaidEdge {
  from: string;
  to: string;
  points: { x: number; y: number }[];
}

export interface Layout {
  nodes: LaidNode[];
  edges: LaidEdge[];
  width: number;
  height: number;
}

export const NODE_HEIGHT = 52;

/** Box width for a step: its id on the first line; on the second its status word (up to
 * "succeeded · ", 12 characters) and `sub`. About 7.5 px a character, within 110..260 px. */
export function nodeWidth(label: string, sub = ""): number {
  const chars = Math.max(label.length, sub.length + 12);
  return Math.min(260, Math.max(110, Math.round(chars * 7.5 + 28)));
}

/** Edges of the graph: one per dependency on a known step (a dependency on an unknown id is
 * dropped rather than drawn to nowhere). */
export function graphEdges(steps: GraphStep[]): { from: string; to: string }[] {
  const ids = new Set(steps.map((s) => s.id));
  const out: { from: string; to: string }[] = [];
  for (const s of steps) for (const d of s.dependsOn) if (ids.has(d) && d !== s.id) out.push({ from: d, to: s.id });
  return out;
}

/** Lays the steps out top to bottom. */
export function layoutSteps(steps: GraphStep[]): Layout {
  const g = new dagre.graphlib.Graph();
  g.setGraph({ rankdir: "TB", nodesep: 28, ranksep: 44, marginx: 12, marginy: 12 });
  g.setDefaultEdgeLabel(() => ({}));
  for (const s of steps) g.setNode(s.id, { width: nodeWidth(s.id, s.sub), height: NODE_HEIGHT });
  const edges = graphEdges(steps);
  for (const e of edges) g.setEdge(e.from, e.to);
  dagre.layout(g);
  const nodes = steps.map((s) => {
    const n = g.node(s.id);
    return { id: s.id, x: n.x, y: n.y, width: n.width, height: n.height, sub: s.sub };
  });
  const laidEdges = edges.map((e) => ({ ...e, points: (g.edge(e.from, e.to)?.points ?? []).map((p: { x: number; y: number }) => ({ x: p.x, y: p.y })) }));
  const gg = g.graph();
  return { nodes, edges: laidEdges, width: gg.width ?? 0, height: gg.height ?? 0 };
}

/** A run's step as its graph node needs it (a subset of the API's StepRun). */
export interface NodeStep {
  status: string;
  kind: string;
  handler: string;
  items?: { succeeded: number; failed: number; total: number } | null;
  emitted?: { succeeded: number; failed: number; total: number } | null;
}

/** What a run's graph node shows: its status and the line after it, from one source. The status
 * of a live event (`live`) newer than the fetched run wins, but the fetched run's counts
 * (`15/18 items`) belong to the fetched status: beside another status they would say two things
 * at once ("succeeded · 15/18 items"), so the node then shows the step's handler or kind until the
 * next fetch agrees with the event. */
export function nodeState(step: NodeStep, live?: string): { status: string; note: string } {
  const plain = step.kind === "task" || !step.kind ? step.handler : step.kind;
  if (live !== undefined && live !== "" && statusWord(live) !== statusWord(step.status)) return { status: live, note: plain };
  if (step.items) return { status: step.status, note: `${step.items.succeeded + step.items.failed}/${step.items.total} items` };
  if (step.emitted) return { status: step.status, note: `${step.emitted.succeeded + step.emitted.failed}/${step.emitted.total} runs` };
  return { status: step.status, note: plain };
}
