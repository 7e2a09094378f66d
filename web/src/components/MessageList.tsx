// MessageList.tsx - the visible branch, virtualized: only the messages near
// the viewport are in the DOM; the rest are spacers with measured (or
// estimated) heights. While the person is at the bottom, the list follows the
// stream; once they scroll up it stays put and offers "Jump to latest".

import { Component, type ComponentChildren } from 'preact';
import { useCallback, useEffect, useLayoutEffect, useMemo, useRef, useState } from 'preact/hooks';
import type { OpenChat } from '../state/chat';
import { MessageItem } from './MessageItem';
import { IconArrowDown } from './Icons';
import { mark } from '../lib/perf';
import { settleSsr } from '../lib/ssr';

const OVERSCAN_PX = 800;
const DEFAULT_HEIGHT = 140;
const STICK_PX = 48;

/** Re-renders only when its props change (the list re-renders when its range does). */
class Row extends Component<{ chat: OpenChat; id: string; observe: (el: Element | null, prev: Element | null) => void }> {
  override shouldComponentUpdate(next: { chat: OpenChat; id: string }): boolean {
    return next.id !== this.props.id || next.chat !== this.props.chat;
  }
  private el: Element | null = null;
  private ref = (el: Element | null) => {
    this.props.observe(el, this.el);
    this.el = el;
  };
  override render(): ComponentChildren {
    return (
      <div class="row" data-row={this.props.id} ref={this.ref}>
        <MessageItem chat={this.props.chat} id={this.props.id} />
      </div>
    );
  }
}

/** The range of rows to render: [start, end). Pure, for tests. */
export function visibleRange(
  heights: number[],
  scrollTop: number,
  viewport: number,
  atBottom: boolean,
  overscan = OVERSCAN_PX,
): [number, number] {
  const n = heights.length;
  if (n === 0) return [0, 0];
  if (atBottom) {
    let start = n;
    let acc = 0;
    while (start > 0 && acc < viewport + overscan) acc += heights[--start]!;
    return [start, n];
  }
  const top = scrollTop - overscan;
  const bottom = scrollTop + viewport + overscan;
  let y = 0;
  let start = 0;
  while (start < n && y + heights[start]! < top) y += heights[start++]!;
  let end = start;
  while (end < n && y < bottom) y += heights[end++]!;
  return [Math.min(start, n - 1), Math.max(end, Math.min(start + 1, n))];
}

export function MessageList({ chat, header }: { chat: OpenChat; header?: ComponentChildren }) {
  const ids = chat.path.value;
  const scroller = useRef<HTMLDivElement>(null);
  const measured = useRef(new Map<string, number>());
  const [, setVersion] = useState(0);
  const stick = useRef(true);
  const [showJump, setShowJump] = useState(false);
  const view = useRef({ top: 0, height: 800 });
  const [range, setRange] = useState<[number, number]>([0, 0]);
  const frame = useRef<number | null>(null);
  // Rows for a chat's first paint: the viewport's only. The overscan (rows
  // just outside it, for smooth scrolling) is added right after that paint.
  const overscan = useRef(0);
  // Only the person unsticks the list: scroll events also come from layout
  // (rows measured taller than estimated, scroll anchoring, clamping), and
  // those must not leave a freshly opened chat stranded mid-way.
  const userAt = useRef(Number.NEGATIVE_INFINITY);
  const userInput = () => {
    userAt.current = performance.now();
  };

  const estimate = () => {
    const m = measured.current;
    if (m.size === 0) return DEFAULT_HEIGHT;
    let sum = 0;
    for (const h of m.values()) sum += h;
    return sum / m.size;
  };
  const heightsOf = (list: string[]) => {
    const est = estimate();
    return list.map((id) => measured.current.get(id) ?? est);
  };

  const recompute = useCallback(() => {
    const el = scroller.current;
    if (!el) return;
    view.current = { top: el.scrollTop, height: el.clientHeight || 800 };
    const r = visibleRange(heightsOf(chat.path.value), view.current.top, view.current.height, stick.current, overscan.current);
    setRange((old) => (old[0] === r[0] && old[1] === r[1] ? old : r));
  }, [chat]);

  const toBottom = useCallback(() => {
    const el = scroller.current;
    if (!el) return;
    el.scrollTop = el.scrollHeight;
  }, []);

  // Measure rows as they render and whenever they change size (streaming).
  const ro = useMemo(
    () =>
      typeof ResizeObserver === 'undefined'
        ? null
        : new ResizeObserver((entries) => {
            let changed = false;
            for (const e of entries) {
              const id = (e.target as HTMLElement).dataset.row;
              if (!id) continue;
              // borderBoxSize does not force a layout the way offsetHeight can.
              const box = e.borderBoxSize?.[0];
              const h = Math.round(box ? box.blockSize : (e.target as HTMLElement).offsetHeight);
              if (measured.current.get(id) !== h) {
                measured.current.set(id, h);
                changed = true;
              }
            }
            if (changed) {
              if (stick.current) toBottom();
              setVersion((v) => v + 1);
              recompute();
            }
          }),
    [recompute, toBottom],
  );
  useEffect(() => () => ro?.disconnect(), [ro]);
  const observe = useCallback(
    (el: Element | null, prev: Element | null) => {
      if (prev && ro) ro.unobserve(prev);
      if (el && ro) ro.observe(el);
    },
    [ro],
  );

  // A new chat or a new branch: start at the bottom.
  useLayoutEffect(() => {
    mark('list-mounted');
    stick.current = true;
    overscan.current = 0;
    setShowJump(false);
    recompute();
  }, [chat, recompute]);
  // Painted: now the rows around the viewport too. (Not straight from an
  // effect: Preact runs pending effects before re-rendering a component, and
  // the layout effects above re-render this one before the first paint.)
  useEffect(() => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const frame = requestAnimationFrame(() => {
      timer = setTimeout(() => {
        overscan.current = OVERSCAN_PX;
        recompute();
      }, 0);
    });
    return () => {
      cancelAnimationFrame(frame);
      clearTimeout(timer);
    };
  }, [chat, recompute]);

  // Older messages arrived above the rendered ones (a partial chat was
  // completed): render the same rows (the indices shift), and keep the first
  // of them where it was on screen, so nothing moves under the person's eyes.
  const prevIds = useRef(ids);
  const anchor = useRef<{ id: string; top: number } | null>(null);
  let current = range;
  if (prevIds.current !== ids) {
    const old = prevIds.current;
    const k = ids.length - old.length;
    if (k > 0 && old.length > 0 && ids[k] === old[0] && range[1] > 0 && range[1] <= old.length) {
      current = [range[0] + k, range[1] + k];
      const row = stick.current ? null : scroller.current?.querySelector<HTMLElement>('[data-row]');
      anchor.current = row?.dataset.row ? { id: row.dataset.row, top: row.getBoundingClientRect().top } : null;
    }
    prevIds.current = ids;
  }

  // The path changed (new message, branch switch): recompute; follow if stuck.
  useLayoutEffect(() => {
    const a = anchor.current;
    anchor.current = null;
    const el = scroller.current;
    if (a && el && !stick.current) {
      const row = el.querySelector<HTMLElement>(`[data-row="${a.id}"]`);
      if (row) el.scrollTop += row.getBoundingClientRect().top - a.top;
    }
    recompute();
    if (stick.current) toBottom();
  }, [ids, recompute, toBottom]);

  useLayoutEffect(() => {
    if (stick.current) toBottom();
    // The chat's rows are in, at the bottom: the server's first screen of
    // it (lib/ssr.ts) goes before this frame is painted.
    if (scroller.current?.querySelector('[data-row]')) settleSsr({ booting: false, chatId: chat.id, listed: true });
  });

  // The person sent, edited or regenerated: follow the new answer.
  const nonce = chat.followNonce.value;
  useLayoutEffect(() => {
    if (nonce === 0) return;
    userAt.current = Number.NEGATIVE_INFINITY;
    stick.current = true;
    setShowJump(false);
    recompute();
    toBottom();
  }, [nonce]);

  const onScroll = () => {
    const el = scroller.current;
    if (!el) return;
    const atBottom = el.scrollHeight - el.scrollTop - el.clientHeight < STICK_PX;
    const byPerson = performance.now() - userAt.current < 1000;
    if (atBottom) stick.current = true;
    else if (byPerson) stick.current = false;
    else if (stick.current) toBottom(); // layout moved us: stay at the latest
    const away = !stick.current;
    if (showJump !== away) setShowJump(away);
    if (frame.current !== null) return;
    frame.current = requestAnimationFrame(() => {
      frame.current = null;
      recompute();
    });
  };

  const onResize = useCallback(() => {
    recompute();
    if (stick.current) toBottom();
  }, [recompute, toBottom]);
  useEffect(() => {
    window.addEventListener('resize', onResize);
    return () => window.removeEventListener('resize', onResize);
  }, [onResize]);

  const heights = heightsOf(ids);
  const [start, end] = current[1] > ids.length || current[1] === 0 ? visibleRange(heights, view.current.top, view.current.height, true, overscan.current) : current;
  let before = 0;
  for (let i = 0; i < start; i++) before += heights[i]!;
  let after = 0;
  for (let i = end; i < ids.length; i++) after += heights[i]!;

  const jump = () => {
    userAt.current = Number.NEGATIVE_INFINITY; // the scrolls that follow are ours
    stick.current = true;
    setShowJump(false);
    recompute();
    toBottom();
    requestAnimationFrame(toBottom);
  };

  return (
    <div class="message-pane">
    <div
      class="message-scroller"
      ref={scroller}
      onScroll={onScroll}
      onWheel={userInput}
      onTouchMove={userInput}
      onPointerDown={userInput}
      onKeyDown={userInput}
      data-testid="message-list"
      role="region"
      aria-label="Messages"
      tabIndex={0}
    >
      <div class="message-column">
        {header}
        {chat.partial.value && (
          <div class="loading-earlier" role="status" data-testid="loading-earlier">
            Loading earlier messages…
          </div>
        )}
        <div style={{ height: `${before}px` }} aria-hidden="true" />
        {ids.slice(start, end).map((id) => (
          <Row key={id} chat={chat} id={id} observe={observe} />
        ))}
        <div style={{ height: `${after}px` }} aria-hidden="true" />
      </div>
    </div>
      {showJump && (
        <button type="button" class="jump-latest" onClick={jump} data-testid="jump-latest">
          <IconArrowDown size={16} /> Jump to latest
        </button>
      )}
    </div>
  );
}
