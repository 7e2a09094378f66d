// debug.ts - development-only checks (imported only when import.meta.env.DEV).
import 'preact/debug';
