// phone.spec.mjs - the main flow at 360x740: the sidebar is a drawer.
import { test, expect, signUp } from '../lib/fixtures.mjs';
import { mainFlow, SLOW_MODEL } from './main-flow.mjs';

test.use({
  serverEnv: { CHATOPENAII_DEFAULT_MODEL: SLOW_MODEL },
  viewport: { width: 360, height: 740 },
  hasTouch: true,
  isMobile: true,
});

test('sidebar is a drawer on a phone', async ({ page }) => {
  await signUp(page);
  const sidebar = page.getByTestId('sidebar');
  await expect(sidebar).not.toBeInViewport();
  const toggle = page.getByTestId('chat-page').getByRole('button', { name: 'Open sidebar' });
  await expect(toggle).toBeVisible();
  await expect(toggle).toHaveAttribute('aria-expanded', 'false');
  await toggle.click();
  await expect(sidebar).toBeInViewport();
  await expect(toggle).toHaveAttribute('aria-expanded', 'true');
  await sidebar.getByRole('button', { name: 'Close sidebar' }).click();
  await expect(sidebar).not.toBeInViewport();
});

test('main flow on a phone', async ({ page, providerURL }) => {
  await mainFlow(page, { providerURL });
});
