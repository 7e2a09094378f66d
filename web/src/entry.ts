// entry.ts - the page's script (index.html; the styles are inlined in the
// page itself, vite.config.ts). It only starts the app: main.tsx and all it
// imports, a chunk of their own (preloaded by index.html), imported at once,
// or, when the server rendered the chat's first screen into the page
// (lib/ssr.ts), once the browser has painted that screen.
//
// Why wait: the frame with the server's rendering is committed as the parser
// finishes, but its raster (a tile worker), draw (the viz process) and
// presentation take tens of milliseconds of CPU after that. Compiling and
// evaluating the app's 170 KB module then competed with them: in a trace of
// a 2,000-message chat on a 2-core machine (bench/web/open.mjs), the
// committed frame's raster took 65 ms wall for 25 ms of CPU beside the
// module's evaluation (85 ms wall), and was presented after it; when a
// frame had shown only part of the block, the one with the last message
// came after the whole evaluation. The server's screen is what the reader
// looks at first; the app takes over right after it is shown.

import { afterFirstPaint } from './lib/paint';
import { ssrChatId } from './lib/ssr';

const start = (): void => void import('./main');
if (ssrChatId() !== null) afterFirstPaint(start);
else start();
