// entry.ts - the page's script (index.html; the styles are inlined in the
// page itself, vite.config.ts). It holds only this wait; the app (main.tsx and everything it imports) is a chunk of its
// own that this module imports: at once, or, when the server rendered the
// chat's first screen into the page (lib/ssr.ts), once the browser has
// painted it.
//
// Why wait: on a page with a server-rendered chat, the first contentful
// frame is committed as the HTML parser finishes, but its raster (tile
// workers), draw (the GPU/viz process) and presentation still take tens of
// milliseconds of CPU after that. Compiling and evaluating the app's 170 KB
// module at that moment competed with them: in a trace of a 2,000-message
// chat on a 2-core machine (bench/web/open.mjs), raster of the committed
// frame took 65 ms wall for 30 ms of CPU while the module was evaluated
// (85 ms wall), and the frame was presented only after it. The server's
// rendering is what the reader looks at first; the app takes over after.

import { afterFirstPaint } from './lib/paint';
import { ssrChatId } from './lib/ssr';

const start = (): void => void import('./main');
if (ssrChatId() !== null) afterFirstPaint(start);
else start();
