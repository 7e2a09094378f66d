import { describe, expect, it } from 'vitest';
import { addChild, buildChildren, defaultLeaf, newestLeaf, siblingInfo, visiblePath, type TreeNode } from './tree';

// u1 ─ a1 ─ u2 ─ a2
//           ├ u2b ─ a2b ─ u3b ─ a3b
//      ├ a1b
// u1x (second root, from editing the first message)
const n = (id: string, parent: string | null, t: number): TreeNode => ({ id, parent_id: parent, created_at: t });
const nodes = [
  n('u1', null, 1),
  n('a1', 'u1', 2),
  n('u2', 'a1', 3),
  n('a2', 'u2', 4),
  n('a1b', 'u1', 5),
  n('u2b', 'a1', 6),
  n('a2b', 'u2b', 7),
  n('u3b', 'a2b', 8),
  n('a3b', 'u3b', 9),
  n('u1x', null, 10),
  n('a1x', 'u1x', 11),
];
const byId = new Map(nodes.map((x) => [x.id, x]));
const children = buildChildren(nodes);

describe('message tree', () => {
  it('visible path follows parent links from the leaf to the root', () => {
    expect(visiblePath(byId, 'a2').map((x) => x.id)).toEqual(['u1', 'a1', 'u2', 'a2']);
    expect(visiblePath(byId, 'a3b').map((x) => x.id)).toEqual(['u1', 'a1', 'u2b', 'a2b', 'u3b', 'a3b']);
    expect(visiblePath(byId, null)).toEqual([]);
    expect(visiblePath(byId, 'missing')).toEqual([]);
  });

  it('stops on cycles', () => {
    const cyc = new Map([
      ['x', n('x', 'y', 1)],
      ['y', n('y', 'x', 2)],
    ]);
    expect(visiblePath(cyc, 'x').map((v) => v.id)).toEqual(['x', 'y'].reverse());
  });

  it('siblings are the children of the same parent, oldest first, with position', () => {
    expect(siblingInfo(children, byId.get('u2b')!)).toEqual({ index: 1, count: 2, prev: 'u2', next: null });
    expect(siblingInfo(children, byId.get('u2')!)).toEqual({ index: 0, count: 2, prev: null, next: 'u2b' });
    expect(siblingInfo(children, byId.get('a1')!)).toEqual({ index: 0, count: 2, prev: null, next: 'a1b' });
    expect(siblingInfo(children, byId.get('u1x')!)).toEqual({ index: 1, count: 2, prev: 'u1', next: null });
    expect(siblingInfo(children, byId.get('a2')!).count).toBe(1);
  });

  it('switching to a sibling shows the newest leaf below it', () => {
    expect(newestLeaf(children, 'u2')).toBe('a2');
    expect(newestLeaf(children, 'a1')).toBe('a3b');
    expect(newestLeaf(children, 'u1')).toBe('a1b');
    expect(newestLeaf(children, 'a3b')).toBe('a3b');
  });

  it('without a current leaf, shows the newest branch', () => {
    expect(defaultLeaf(children)).toBe('a1x');
    expect(defaultLeaf(new Map())).toBe(null);
  });

  it('adding a child keeps siblings ordered by time, then id', () => {
    const c = buildChildren(nodes);
    const m = new Map(byId);
    const late = n('a2z', 'u2', 20);
    const early = n('a2a', 'u2', 3.5);
    m.set(late.id, late);
    m.set(early.id, early);
    addChild(c, late, m);
    addChild(c, early, m);
    addChild(c, late, m); // idempotent
    expect(c.get('u2')).toEqual(['a2a', 'a2', 'a2z']);
    const tie = n('a2b0', 'u2', 4);
    m.set(tie.id, tie);
    addChild(c, tie, m);
    expect(c.get('u2')).toEqual(['a2a', 'a2', 'a2b0', 'a2z']);
  });
});
