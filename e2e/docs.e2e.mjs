// The interactive docs in a real browser: register, open /docs, log in with the
// "Authorize" dialog, call GET /api/v1/users/me with "Try it out", then render /redoc.
// Every request that does not go to the server under test is aborted and reported.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const BASE_URL = process.env.BASE_URL;
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const TIMEOUT = 30_000;
const LOCAL_HOST = new URL(BASE_URL).hostname;
// ReDoc's bundle hard-codes the footer logo of "API docs by Redocly" on its CDN. The docs
// Content-Security-Policy refuses it before any request is made, and the image hides itself.
const EXPECTED_CSP_REFUSAL = 'https://cdn.redoc.ly/redoc/logo-mini.svg';
const email = `e2e-${Date.now()}@example.com`;
const password = 'correct horse battery';

function step(message) {
  console.log(`e2e: ${message}`);
}

async function register() {
  const response = await fetch(`${BASE_URL}/api/v1/auth/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email, password }),
  });
  assert.equal(response.status, 201, await response.text());
}

async function main() {
  await register();
  step(`registered ${email}`);

  const profile = mkdtempSync(join(tmpdir(), 'fasttrack-e2e-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  const external = [];
  let local = 0;
  const problems = [];
  const tokenCalls = [];
  try {
    await context.route('**/*', (route) => {
      const url = new URL(route.request().url());
      if (url.hostname === LOCAL_HOST || url.protocol === 'data:' || url.protocol === 'blob:') {
        local += 1;
        return route.continue();
      }
      external.push(url.href);
      return route.abort('blockedbyclient');
    });
    context.on('response', (response) => {
      if (response.url().endsWith('/api/v1/auth/token')) {
        tokenCalls.push(response.status());
      }
    });
    const page = await context.newPage();
    page.setDefaultTimeout(TIMEOUT);
    page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
    page.on('console', (message) => {
      const text = message.text();
      if (message.type() === 'error' && !text.includes(EXPECTED_CSP_REFUSAL)) {
        problems.push(`console: ${text}`);
      }
    });

    await page.goto(`${BASE_URL}/docs`);
    await page.locator('.swagger-ui .info .title').waitFor();
    step('Swagger UI rendered');

    await page.locator('.scheme-container button.authorize').click();
    const dialog = page.locator('.modal-ux');
    await dialog.locator('#oauth_username').fill(email);
    await dialog.locator('#oauth_password').fill(password);
    await dialog.locator('button.modal-btn.authorize').click();
    await dialog.locator('button.modal-btn', { hasText: 'Logout' }).waitFor();
    assert.deepEqual(tokenCalls, [200], 'the dialog logs in through /api/v1/auth/token');
    await dialog.locator('button.btn-done').click();
    step('authorized through /api/v1/auth/token');

    const operation = page.locator('.opblock-get', {
      has: page.locator('.opblock-summary-path[data-path="/api/v1/users/me"]'),
    });
    await operation.locator('.opblock-summary').click();
    await operation.locator('button.try-out__btn').click();
    await operation.locator('button.execute').click();
    const status = operation.locator('.live-responses-table tbody .response-col_status').first();
    await status.waitFor();
    assert.equal((await status.innerText()).trim(), '200');
    const body = await operation.locator('.live-responses-table tbody .microlight').first().innerText();
    assert.equal(JSON.parse(body).email, email);
    step('GET /api/v1/users/me via "Try it out" answered 200 with the user');

    await page.goto(`${BASE_URL}/redoc`);
    await page.locator('.api-info h1').waitFor();
    assert.match(await page.locator('.api-info h1').innerText(), /fasttrack/);
    await page.locator('[data-section-id^="tag/users"]').first().waitFor();
    await page.getByText('/api/v1/users/me').first().waitFor({ state: 'attached' });
    step('ReDoc rendered the operations');
  } finally {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  }

  assert.ok(local > 5, `only ${local} requests were seen: is the interception working?`);
  assert.deepEqual(external, [], `requests left the machine: ${external.join(', ')}`);
  assert.deepEqual(problems, [], problems.join('\n'));
  step('no external request, no page or console error');
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
