// Icons.tsx - small inline SVG icons (decorative: aria-hidden; the button
// around each carries the accessible name).
import type { SVGAttributes } from 'preact';

type P = { size?: number } & SVGAttributes<SVGSVGElement>;

function icon(d: string | string[], fill = false) {
  return ({ size = 18, ...rest }: P) => (
    <svg
      width={size}
      height={size}
      viewBox="0 0 24 24"
      fill={fill ? 'currentColor' : 'none'}
      stroke={fill ? 'none' : 'currentColor'}
      stroke-width="2"
      stroke-linecap="round"
      stroke-linejoin="round"
      aria-hidden="true"
      focusable="false"
      {...rest}
    >
      {(Array.isArray(d) ? d : [d]).map((p) => (
        <path d={p} key={p} />
      ))}
    </svg>
  );
}

export const IconPlus = icon(['M12 5v14', 'M5 12h14']);
export const IconNewChat = icon(['M12 20h9', 'M16.5 3.5a2.12 2.12 0 0 1 3 3L7 19l-4 1 1-4Z']);
export const IconMenu = icon(['M4 6h16', 'M4 12h16', 'M4 18h16']);
export const IconClose = icon(['M18 6 6 18', 'M6 6l12 12']);
export const IconSend = icon(['M12 19V5', 'M5 12l7-7 7 7']);
export const IconStop = icon('M7 7h10v10H7z', true);
export const IconCopy = icon(['M9 9h11v11H9z', 'M5 15H4V4h11v1']);
export const IconCheck = icon('M20 6 9 17l-5-5');
export const IconEdit = icon(['M12 20h9', 'M16.5 3.5a2.12 2.12 0 0 1 3 3L7 19l-4 1 1-4Z']);
export const IconRegenerate = icon(['M21 12a9 9 0 1 1-3-6.7', 'M21 3v6h-6']);
export const IconChevronLeft = icon('M15 18l-6-6 6-6');
export const IconChevronRight = icon('M9 18l6-6-6-6');
export const IconChevronDown = icon('M6 9l6 6 6-6');
export const IconTrash = icon(['M3 6h18', 'M8 6V4h8v2', 'M19 6l-1 14H6L5 6']);
export const IconSettings = icon([
  'M12 15a3 3 0 1 0 0-6 3 3 0 0 0 0 6Z',
  'M19.4 15a1.65 1.65 0 0 0 .33 1.82l.06.06a2 2 0 1 1-2.83 2.83l-.06-.06a1.65 1.65 0 0 0-1.82-.33 1.65 1.65 0 0 0-1 1.51V21a2 2 0 0 1-4 0v-.09A1.65 1.65 0 0 0 9 19.4a1.65 1.65 0 0 0-1.82.33l-.06.06a2 2 0 1 1-2.83-2.83l.06-.06A1.65 1.65 0 0 0 4.68 15a1.65 1.65 0 0 0-1.51-1H3a2 2 0 0 1 0-4h.09A1.65 1.65 0 0 0 4.6 9a1.65 1.65 0 0 0-.33-1.82l-.06-.06a2 2 0 1 1 2.83-2.83l.06.06A1.65 1.65 0 0 0 9 4.68a1.65 1.65 0 0 0 1-1.51V3a2 2 0 0 1 4 0v.09a1.65 1.65 0 0 0 1 1.51 1.65 1.65 0 0 0 1.82-.33l.06-.06a2 2 0 1 1 2.83 2.83l-.06.06A1.65 1.65 0 0 0 19.4 9a1.65 1.65 0 0 0 1.51 1H21a2 2 0 0 1 0 4h-.09a1.65 1.65 0 0 0-1.51 1Z',
]);
export const IconSliders = icon(['M4 21v-7', 'M4 10V3', 'M12 21v-9', 'M12 8V3', 'M20 21v-5', 'M20 12V3', 'M1 14h6', 'M9 8h6', 'M17 16h6']);
export const IconArrowDown = icon(['M12 5v14', 'M19 12l-7 7-7-7']);
export const IconLogout = icon(['M9 21H5a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2h4', 'M16 17l5-5-5-5', 'M21 12H9']);
export const IconMore = icon(['M5 12h.01', 'M12 12h.01', 'M19 12h.01']);
export const IconAlert = icon(['M12 9v4', 'M12 17h.01', 'M10.3 3.9 1.8 18a2 2 0 0 0 1.7 3h17a2 2 0 0 0 1.7-3L13.7 3.9a2 2 0 0 0-3.4 0Z']);
export const IconBack = icon(['M19 12H5', 'M12 19l-7-7 7-7']);
