// tree.ts - the message tree of a chat, as pure functions. Messages form a
// tree through parent_id; the visible branch is the path from the root to the
// chat's current leaf; siblings are the children of the same parent, oldest
// first (the server orders by created_at, then id).

export interface TreeNode {
  id: string;
  parent_id: string | null;
  created_at: number;
}

/** Children of each parent ('' = roots), oldest first. */
export type Children = Map<string, string[]>;

export const ROOT = '';

export function compareNodes(a: TreeNode, b: TreeNode): number {
  return a.created_at - b.created_at || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

export function buildChildren(nodes: Iterable<TreeNode>): Children {
  const byParent = new Map<string, TreeNode[]>();
  for (const n of nodes) {
    const k = n.parent_id ?? ROOT;
    let list = byParent.get(k);
    if (!list) byParent.set(k, (list = []));
    list.push(n);
  }
  const out: Children = new Map();
  for (const [k, list] of byParent) out.set(k, list.sort(compareNodes).map((n) => n.id));
  return out;
}

/** Insert one node into children, keeping order (a new message is usually the newest). */
export function addChild(children: Children, node: TreeNode, byId: Map<string, TreeNode>): void {
  const k = node.parent_id ?? ROOT;
  const list = children.get(k) ?? [];
  if (list.includes(node.id)) return;
  let i = list.length;
  while (i > 0) {
    const prev = byId.get(list[i - 1]!);
    if (!prev || compareNodes(prev, node) <= 0) break;
    i--;
  }
  list.splice(i, 0, node.id);
  children.set(k, list);
}

/** Follow the newest child down to a leaf (what the server does when switching branch). */
export function newestLeaf(children: Children, id: string): string {
  let cur = id;
  for (let guard = 0; guard < 1_000_000; guard++) {
    const kids = children.get(cur);
    if (!kids || kids.length === 0) return cur;
    cur = kids[kids.length - 1]!;
  }
  return cur;
}

/** The path from the root to leafId (root first). Missing or cyclic links end the walk. */
export function visiblePath<T extends TreeNode>(byId: Map<string, T>, leafId: string | null): T[] {
  const out: T[] = [];
  const seen = new Set<string>();
  let cur = leafId ? byId.get(leafId) : undefined;
  while (cur && !seen.has(cur.id)) {
    seen.add(cur.id);
    out.push(cur);
    cur = cur.parent_id ? byId.get(cur.parent_id) : undefined;
  }
  return out.reverse();
}

/** The leaf to show when the chat names none: the newest leaf from the newest root. */
export function defaultLeaf(children: Children): string | null {
  const roots = children.get(ROOT);
  if (!roots || roots.length === 0) return null;
  return newestLeaf(children, roots[roots.length - 1]!);
}

export interface SiblingInfo {
  /** 0-based position among its siblings. */
  index: number;
  count: number;
  prev: string | null;
  next: string | null;
}

export function siblingInfo(children: Children, node: TreeNode): SiblingInfo {
  const list = children.get(node.parent_id ?? ROOT) ?? [node.id];
  const index = Math.max(0, list.indexOf(node.id));
  return {
    index,
    count: list.length,
    prev: index > 0 ? list[index - 1]! : null,
    next: index < list.length - 1 ? list[index + 1]! : null,
  };
}
