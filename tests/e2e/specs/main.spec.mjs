// main.spec.mjs - the main flow on a desktop viewport, with axe-core checks.
import { test } from '../lib/fixtures.mjs';
import { mainFlow, SLOW_MODEL } from './main-flow.mjs';

test.use({ serverEnv: { CHATOPENAII_DEFAULT_MODEL: SLOW_MODEL } });

test('sign up, set key, chat, stop, regenerate, edit + branches, reload mid-stream, rename, delete, sign out', async ({ page, providerURL }) => {
  await mainFlow(page, { providerURL, a11y: true });
});
