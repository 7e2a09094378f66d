// accounts.test.mjs - registration, sign-in/out, the current user, password
// change, sessions, CSRF, closed registration + `admin create-user`, and the
// session cookie lifetime. Every test starts its own server (fresh data dir)
// and checks, after the server stops, that it exited cleanly and printed no
// sanitizer report.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { startServer, Client, register, login, defaultBinary, pgDatabaseFor } from '../lib/harness.mjs';

const REGISTER = '/api/v1/auth/register';
const LOGIN = '/api/v1/auth/login';
const LOGOUT = '/api/v1/auth/logout';
const ME = '/api/v1/me';
const PASSWORD = '/api/v1/me/password';
const SESSIONS = '/api/v1/sessions';

// Start a server, run fn(server), stop it; the server must exit 0 and print
// no ASan/UBSan/LSan report.
async function withServer(opts, fn) {
  const server = await startServer(opts);
  let failed = null;
  try {
    await fn(server);
  } catch (err) {
    failed = err;
  }
  let code;
  try {
    code = await server.stop();
  } catch (err) {
    failed = failed ?? err;
  }
  const report = server.sanitizerReport();
  try {
    if (failed) throw failed;
    assert.equal(report, null, `sanitizer report in server output:\n${report}`);
    assert.equal(code, 0, `server exit code after SIGTERM; last lines:\n${server.logs().slice(-15).join('\n')}`);
  } finally {
    server.removeDataDir();
  }
}

// The one error shape: exactly {"error":{"code":string,"message":string}}.
function assertError(res, status, code) {
  assert.equal(res.status, status, `status (body: ${res.text.slice(0, 300)})`);
  assert.match(res.headers['content-type'] ?? '', /^application\/json/, 'error content-type');
  assert.ok(res.json, `error body is JSON: ${res.text.slice(0, 300)}`);
  assert.deepEqual(Object.keys(res.json), ['error'], 'top-level keys of an error');
  assert.deepEqual(Object.keys(res.json.error).sort(), ['code', 'message'], 'keys of error');
  assert.equal(typeof res.json.error.code, 'string');
  assert.equal(typeof res.json.error.message, 'string');
  assert.ok(res.json.error.message.length > 0, 'error message is not empty');
  if (code !== undefined) assert.equal(res.json.error.code, code, 'error code');
}

function parseSetCookie(res, name = 'coai_session') {
  const all = res.headers['set-cookie'] ?? [];
  const sc = all.find((c) => c.startsWith(`${name}=`));
  if (!sc) return null;
  const [pair, ...rest] = sc.split(';').map((s) => s.trim());
  const attrs = {};
  for (const a of rest) {
    const eq = a.indexOf('=');
    const k = (eq < 0 ? a : a.slice(0, eq)).toLowerCase();
    attrs[k] = eq < 0 ? true : a.slice(eq + 1);
  }
  return { raw: sc, value: pair.slice(name.length + 1), attrs };
}

// A client that presents a given session cookie value.
function clientWithCookie(url, value) {
  const c = new Client(url);
  c.cookies.set('coai_session', value);
  return c;
}

function assertUserView(user, email) {
  assert.equal(typeof user.id, 'string');
  assert.ok(user.id.length > 0);
  assert.equal(user.email, email);
  assert.equal(typeof user.is_admin, 'boolean');
  for (const k of Object.keys(user)) {
    assert.doesNotMatch(k, /pass|hash|salt/i, `user JSON exposes ${k}`);
  }
}

const PW = 'correct horse battery';

test('register: 201, session cookie attributes, user view without secrets; first user is admin, second is not', async () => {
  await withServer({}, async ({ url }) => {
    const a = new Client(url);
    const res = await a.post(REGISTER, { email: 'alice@example.com', password: PW, name: 'Alice' });
    assert.equal(res.status, 201, res.text);
    const ck = parseSetCookie(res);
    assert.ok(ck, `Set-Cookie coai_session missing: ${JSON.stringify(res.headers['set-cookie'])}`);
    assert.ok(ck.value.length >= 32, `session token looks too short: ${ck.value}`);
    assert.equal(ck.attrs.httponly, true, `HttpOnly missing: ${ck.raw}`);
    assert.equal(String(ck.attrs.samesite).toLowerCase(), 'lax', `SameSite=Lax missing: ${ck.raw}`);
    assert.equal(ck.attrs.path, '/', `Path=/ missing: ${ck.raw}`);
    assert.match(String(ck.attrs['max-age']), /^\d+$/, `Max-Age missing: ${ck.raw}`);
    assert.ok(Number(ck.attrs['max-age']) > 0);
    assert.equal(ck.attrs.secure, undefined, 'Secure is off by default (plain-HTTP dev setup)');

    assert.ok(res.json?.user, res.text);
    assertUserView(res.json.user, 'alice@example.com');
    assert.equal(res.json.user.name, 'Alice');
    assert.equal(res.json.user.is_admin, true, 'first account is admin');
    assert.doesNotMatch(res.text, /argon2|\$2[aby]\$/i, 'no password hash in the body');
    assert.ok(!res.text.includes(PW), 'password echoed back');

    // The cookie is a working session.
    const me = await a.get(ME);
    assert.equal(me.status, 200, me.text);
    assert.equal(me.json.user.id, res.json.user.id);
    assert.equal(me.json.user.is_admin, true);
    assertUserView(me.json.user, 'alice@example.com');
    assert.doesNotMatch(me.text, /argon2/i);

    const b = new Client(url);
    const res2 = await b.post(REGISTER, { email: 'bob@example.com', password: PW });
    assert.equal(res2.status, 201, res2.text);
    assert.equal(res2.json.user.is_admin, false, 'second account is not admin');
    assert.equal(res2.json.user.name, null);
    assert.notEqual(res2.json.user.id, res.json.user.id);
    const me2 = await b.get(ME);
    assert.equal(me2.json.user.email, 'bob@example.com');
    assert.equal(me2.json.user.is_admin, false);
  });
});

test('register: duplicate email (any case) 409 email_taken; invalid email 400; weak password 400', async () => {
  await withServer({}, async ({ url }) => {
    const c = new Client(url);
    await register(c, 'carol@example.com', PW);
    for (const email of ['carol@example.com', 'Carol@Example.COM', 'CAROL@EXAMPLE.COM']) {
      const res = await new Client(url).post(REGISTER, { email, password: PW });
      assertError(res, 409, 'email_taken');
      assert.equal(res.headers['set-cookie'], undefined, 'no session for a failed register');
    }
    for (const email of ['not-an-email', '@example.com', 'a@', 'a@b', 'a b@example.com', 'a@@example.com', 'a@example.com.', '']) {
      const res = await new Client(url).post(REGISTER, { email, password: PW });
      assertError(res, 400);
      assert.equal(res.json.error.code, 'invalid_email', `email ${JSON.stringify(email)}: ${res.text}`);
    }
    for (const password of ['', 'short', '1234567']) {
      const res = await new Client(url).post(REGISTER, { email: 'dave@example.com', password });
      assertError(res, 400, 'weak_password');
    }
    // None of the failures created an account: dave can still register.
    const ok = await new Client(url).post(REGISTER, { email: 'dave@example.com', password: '12345678' });
    assert.equal(ok.status, 201, `8 characters is enough: ${ok.text}`);
  });
});

test('register/login: missing fields and wrong types are 400 in the one error shape', async () => {
  await withServer({}, async ({ url }) => {
    const c = new Client(url);
    const bad = [
      [REGISTER, {}],
      [REGISTER, { email: 'x@example.com' }],
      [REGISTER, { password: PW }],
      [REGISTER, { email: 42, password: PW }],
      [REGISTER, { email: 'x@example.com', password: 12345678 }],
      [REGISTER, { email: ['x@example.com'], password: PW }],
      [REGISTER, { email: 'x@example.com', password: { p: PW } }],
      [REGISTER, { email: 'x@example.com', password: PW, name: 7 }],
      [REGISTER, { email: 'x@example.com', password: true }],
      [LOGIN, {}],
      [LOGIN, { email: 'x@example.com' }],
      [LOGIN, { email: 1, password: PW }],
      [LOGIN, { email: 'x@example.com', password: null }],
    ];
    for (const [p, body] of bad) {
      const res = await c.post(p, body);
      assertError(res, 400);
      assert.ok(['invalid_request', 'invalid_email', 'weak_password'].includes(res.json.error.code),
        `${p} ${JSON.stringify(body)}: code ${res.json.error.code}`);
    }
    // A POST with no body at all is 400 too, not a crash or a 500.
    const empty = await c.request('POST', REGISTER, {});
    assertError(empty, 400);
    const bad2 = await c.post(REGISTER, { email: 'x@example.com', password: 'a\u0000bcdefghij' });
    assertError(bad2, 400);
    // Nothing was created.
    const res = await c.post(REGISTER, { email: 'x@example.com', password: PW });
    assert.equal(res.status, 201, res.text);
    assert.equal(res.json.user.is_admin, true, 'the failed attempts created no user');
  });
});

test('login: success; wrong password and unknown email give identical 401 invalid_credentials', async () => {
  await withServer({}, async ({ url }) => {
    await register(new Client(url), 'erin@example.com', PW);

    const c = new Client(url);
    const ok = await login(c, 'erin@example.com', PW);
    assert.equal(ok.status, 200, ok.text);
    assertUserView(ok.json.user, 'erin@example.com');
    const ck = parseSetCookie(ok);
    assert.ok(ck && ck.value.length >= 32, 'login sets a session cookie');
    assert.equal(ck.attrs.httponly, true);
    assert.equal((await c.get(ME)).status, 200);
    // Email lookup ignores ASCII case, like the uniqueness check.
    const upper = await new Client(url).post(LOGIN, { email: 'ERIN@Example.COM', password: PW });
    assert.equal(upper.status, 200, `login with different email case: ${upper.text}`);
    assert.equal(upper.json.user.email, 'erin@example.com', 'the stored spelling is returned');

    const wrong = await new Client(url).post(LOGIN, { email: 'erin@example.com', password: 'wrong password' });
    const unknown = await new Client(url).post(LOGIN, { email: 'nobody@example.com', password: 'wrong password' });
    const unknown2 = await new Client(url).post(LOGIN, { email: 'nobody@example.com', password: PW });
    assertError(wrong, 401, 'invalid_credentials');
    assertError(unknown, 401, 'invalid_credentials');
    assert.equal(wrong.text, unknown.text, 'wrong password and unknown email bodies differ (account enumeration)');
    assert.equal(unknown2.text, wrong.text);
    for (const r of [wrong, unknown]) {
      assert.equal(r.headers['set-cookie'], undefined, 'no cookie on failed login');
      assert.equal(r.headers['content-type'], ok.headers['content-type']);
    }
    // The login of a wrong-password attempt did not establish a session.
    const anon = new Client(url);
    await anon.post(LOGIN, { email: 'erin@example.com', password: 'wrong password' });
    assertError(await anon.get(ME), 401, 'unauthorized');
  });
});

test('logout clears the cookie and the old cookie stops working; GET /me without a session is 401', async () => {
  await withServer({}, async ({ url }) => {
    assertError(await new Client(url).get(ME), 401, 'unauthorized');
    assertError(await clientWithCookie(url, 'bogus-token').get(ME), 401, 'unauthorized');

    const c = new Client(url);
    await register(c, 'frank@example.com', PW);
    const token = c.cookies.get('coai_session');
    assert.ok(token);
    const me = await c.get(ME);
    assert.equal(me.status, 200);
    assert.equal(me.json.user.email, 'frank@example.com');

    const out = await c.post(LOGOUT, undefined);
    assert.equal(out.status, 204, out.text);
    assert.equal(out.body.length, 0, '204 has no body');
    const ck = parseSetCookie(out);
    assert.ok(ck, 'logout sends a Set-Cookie');
    assert.equal(ck.value, '', `logout cookie value should be empty: ${ck.raw}`);
    assert.equal(Number(ck.attrs['max-age']), 0, `logout cookie Max-Age=0: ${ck.raw}`);
    assert.equal(ck.attrs.path, '/');
    assert.equal(c.cookies.has('coai_session'), false);

    // The old token is dead server-side, not just forgotten by the client.
    const old = clientWithCookie(url, token);
    assertError(await old.get(ME), 401, 'unauthorized');
    assertError(await old.post(LOGOUT, undefined), 401, 'unauthorized');
    // Logging in again works.
    await login(c, 'frank@example.com', PW);
    assert.equal((await c.get(ME)).status, 200);
  });
});

test('change password: wrong current 403, success 204, other sessions revoked, current kept, new password works', async () => {
  await withServer({}, async ({ url }) => {
    const a = new Client(url);
    await register(a, 'gina@example.com', PW);
    const b = new Client(url);
    await login(b, 'gina@example.com', PW);
    assert.equal((await b.get(ME)).status, 200);

    const NEW = 'a much better passphrase';
    assertError(await a.post(PASSWORD, { current_password: 'not the password', new_password: NEW }), 403);
    assertError(await a.post(PASSWORD, { current_password: PW, new_password: 'short' }), 400, 'weak_password');
    assertError(await a.post(PASSWORD, { current_password: PW }), 400);
    assertError(await a.post(PASSWORD, { current_password: PW, new_password: 12345678 }), 400);
    assertError(await new Client(url).post(PASSWORD, { current_password: PW, new_password: NEW }), 401);
    // The failed attempts changed nothing and revoked nothing.
    assert.equal((await b.get(ME)).status, 200, 'a failed change must not revoke sessions');
    await login(new Client(url), 'gina@example.com', PW);

    const res = await a.post(PASSWORD, { current_password: PW, new_password: NEW });
    assert.equal(res.status, 204, res.text);
    assert.equal(res.body.length, 0);

    assert.equal((await a.get(ME)).status, 200, 'the session that changed the password keeps working');
    assertError(await b.get(ME), 401, 'unauthorized');

    assertError(await new Client(url).post(LOGIN, { email: 'gina@example.com', password: PW }), 401, 'invalid_credentials');
    const c = new Client(url);
    await login(c, 'gina@example.com', NEW);
    assert.equal((await c.get(ME)).status, 200);

    const list = await a.get(SESSIONS);
    assert.equal(list.status, 200);
    assert.equal(list.json.data.length, 2, `sessions after change: a + the new login c: ${list.text}`);
  });
});

test('sessions: list with current flag, revoke another session, someone else\'s session id is 404', async () => {
  await withServer({}, async ({ url }) => {
    // Register (one session), log out, then two logins: exactly two sessions.
    const r = new Client(url);
    await register(r, 'hank@example.com', PW);
    assert.equal((await r.post(LOGOUT, undefined)).status, 204);

    const a = new Client(url, { headers: { 'user-agent': 'agent-A/1.0' } });
    const b = new Client(url, { headers: { 'user-agent': 'agent-B/2.0' } });
    await login(a, 'hank@example.com', PW);
    await login(b, 'hank@example.com', PW);

    const la = await a.get(SESSIONS);
    assert.equal(la.status, 200, la.text);
    assert.ok(Array.isArray(la.json.data), la.text);
    assert.equal(la.json.data.length, 2, `two sessions expected: ${la.text}`);
    const curA = la.json.data.filter((s) => s.current === true);
    assert.equal(curA.length, 1, 'exactly one session is current');
    assert.equal(curA[0].user_agent, 'agent-A/1.0');
    const other = la.json.data.find((s) => s.current === false);
    assert.ok(other, 'the other session is listed with current=false');
    assert.equal(other.user_agent, 'agent-B/2.0');
    for (const s of la.json.data) {
      assert.equal(typeof s.id, 'string');
      assert.equal(typeof s.created_at, 'number');
      assert.equal(typeof s.expires_at, 'number');
      assert.ok(s.expires_at > s.created_at);
      for (const k of Object.keys(s)) assert.doesNotMatch(k, /token|hash/i, `session view exposes ${k}`);
      assert.ok(!la.text.includes(a.cookies.get('coai_session')), 'session list leaks a cookie token');
    }
    const lb = await b.get(SESSIONS);
    const curB = lb.json.data.find((s) => s.current);
    assert.equal(curB.id, other.id, 'B sees its own session as current');

    // Another user cannot revoke hank's session (404, and it keeps working).
    const z = new Client(url);
    await register(z, 'zoe@example.com', PW);
    assertError(await z.delete(`${SESSIONS}/${other.id}`), 404, 'not_found');
    assert.equal((await b.get(ME)).status, 200, 'a foreign DELETE must not revoke the session');
    assertError(await z.delete(`${SESSIONS}/not-a-session-id`), 404);
    const zl = await z.get(SESSIONS);
    assert.equal(zl.json.data.length, 1, 'zoe sees only her own session');
    assertError(await a.delete(`${SESSIONS}/${zl.json.data[0].id}`), 404, 'not_found');
    assert.equal((await z.get(ME)).status, 200);

    // Revoke B from A.
    const del = await a.delete(`${SESSIONS}/${other.id}`);
    assert.equal(del.status, 204, del.text);
    assert.equal(del.headers['set-cookie'], undefined, 'revoking another session does not touch my cookie');
    assertError(await b.get(ME), 401, 'unauthorized');
    assert.equal((await a.get(ME)).status, 200);
    const after = await a.get(SESSIONS);
    assert.deepEqual(after.json.data.map((s) => s.current), [true]);
    assertError(await a.delete(`${SESSIONS}/${other.id}`), 404, 'not_found');

    // Revoking the current session clears the cookie and signs out.
    const self = await a.delete(`${SESSIONS}/${curA[0].id}`);
    assert.equal(self.status, 204);
    const ck = parseSetCookie(self);
    assert.ok(ck && Number(ck.attrs['max-age']) === 0, 'revoking the current session clears the cookie');
    assertError(await a.get(ME), 401);
  });
});

test('CSRF: missing X-Requested-With, foreign Origin, Sec-Fetch-Site: cross-site are 403 csrf_failed', async () => {
  await withServer({}, async ({ url }) => {
    const c = new Client(url);
    await register(c, 'ivy@example.com', PW);
    const body = { email: 'mallory@example.com', password: PW };
    const origin = new URL(url).origin;

    const noHeader = await c.post(REGISTER, body, { csrf: false });
    assertError(noHeader, 403, 'csrf_failed');
    const wrongValue = await c.post(REGISTER, body, { headers: { 'x-requested-with': 'XMLHttpRequest' } });
    assertError(wrongValue, 403, 'csrf_failed');
    const foreign = await c.post(REGISTER, body, { headers: { origin: 'http://evil.example' } });
    assertError(foreign, 403, 'csrf_failed');
    const foreignPort = await c.post(REGISTER, body, { headers: { origin: 'http://127.0.0.1:1' } });
    assertError(foreignPort, 403, 'csrf_failed');
    const nullOrigin = await c.post(REGISTER, body, { headers: { origin: 'null' } });
    assertError(nullOrigin, 403, 'csrf_failed');
    const crossSite = await c.post(REGISTER, body, { headers: { 'sec-fetch-site': 'cross-site' } });
    assertError(crossSite, 403, 'csrf_failed');
    const sameSite = await c.post(REGISTER, body, { headers: { 'sec-fetch-site': 'same-site' } });
    assertError(sameSite, 403, 'csrf_failed');

    // Authenticated unsafe requests are guarded too: logout without the header keeps the session.
    assertError(await c.post(LOGOUT, undefined, { csrf: false }), 403, 'csrf_failed');
    assertError(await c.delete(`${SESSIONS}/whatever`, { csrf: false }), 403, 'csrf_failed');
    assertError(await c.post(PASSWORD, { current_password: PW, new_password: 'hijacked password' },
      { headers: { origin: 'https://evil.example' } }), 403, 'csrf_failed');
    assert.equal((await c.get(ME)).status, 200, 'refused logout did not sign out');
    await login(new Client(url), 'ivy@example.com', PW); // password unchanged

    // Nothing above created mallory; the same request with proper headers does.
    const ok = await new Client(url).post(REGISTER, body, { headers: { 'sec-fetch-site': 'same-origin', origin } });
    assert.equal(ok.status, 201, `same-origin request must pass: ${ok.text}`);
    // Without Origin (non-browser clients) the custom header alone is enough.
    const noOrigin = await new Client(url).post(LOGIN, body, { headers: { origin: null } });
    assert.equal(noOrigin.status, 200, noOrigin.text);
  });
});

function runCli(args, { env, input, timeoutMs = 20000 } = {}) {
  return new Promise((resolve, reject) => {
    const fullEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('CHATOPENAII_')));
    Object.assign(fullEnv, env);
    const pg = fullEnv.CHATOPENAII_DATA_DIR && pgDatabaseFor(fullEnv.CHATOPENAII_DATA_DIR);
    if (pg && !fullEnv.CHATOPENAII_DATABASE_URL) fullEnv.CHATOPENAII_DATABASE_URL = pg;
    const p = spawn(defaultBinary, args, { env: fullEnv, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => { stdout += d; });
    p.stderr.on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => { p.kill('SIGKILL'); reject(new Error(`${args.join(' ')}: timed out; stderr: ${stderr}`)); }, timeoutMs);
    p.on('error', reject);
    p.on('close', (code, signal) => { clearTimeout(timer); resolve({ code, signal, stdout, stderr }); });
    p.stdin.end(input ?? '');
  });
}

test('registration closed: 403 registration_closed; admin create-user --password-stdin makes a user who can log in', async () => {
  await withServer({ env: { CHATOPENAII_REGISTRATION: 'closed' } }, async (server) => {
    const { url, dataDir } = server;
    const res = await new Client(url).post(REGISTER, { email: 'root@example.com', password: PW });
    assertError(res, 403, 'registration_closed');
    assert.equal(res.headers['set-cookie'], undefined);
    assertError(await new Client(url).post(LOGIN, { email: 'root@example.com', password: PW }), 401, 'invalid_credentials');

    const ADMIN_PW = 'stdin passphrase 42';
    const cli = await runCli(['admin', 'create-user', '--email', 'root@example.com', '--password-stdin', '--admin'], {
      env: { CHATOPENAII_DATA_DIR: dataDir, CHATOPENAII_LOG_LEVEL: 'warn' },
      input: `${ADMIN_PW}\n`,
    });
    assert.equal(cli.code, 0, `create-user failed: ${cli.stderr}${cli.stdout}`);
    assert.match(cli.stdout, /root@example\.com/);
    assert.ok(!cli.stdout.includes(ADMIN_PW) && !cli.stderr.includes(ADMIN_PW), 'CLI echoed the password');
    assert.doesNotMatch(cli.stderr, /AddressSanitizer|LeakSanitizer|runtime error:/, cli.stderr);

    const c = new Client(url);
    const ok = await login(c, 'root@example.com', ADMIN_PW);
    assert.equal(ok.json.user.is_admin, true, 'created with --admin');
    assert.equal((await c.get(ME)).json.user.email, 'root@example.com');
    // The trailing newline from stdin is not part of the password.
    assertError(await new Client(url).post(LOGIN, { email: 'root@example.com', password: `${ADMIN_PW}\n` }), 401);

    // A second (non-admin) user via the CLI, and a duplicate is refused.
    const cli2 = await runCli(['admin', 'create-user', '--email', 'user@example.com', '--password-stdin'], {
      env: { CHATOPENAII_DATA_DIR: dataDir, CHATOPENAII_LOG_LEVEL: 'warn' }, input: 'user passphrase\n',
    });
    assert.equal(cli2.code, 0, cli2.stderr);
    const u = await login(new Client(url), 'user@example.com', 'user passphrase');
    assert.equal(u.json.user.is_admin, false);
    const dup = await runCli(['admin', 'create-user', '--email', 'ROOT@example.com', '--password-stdin'], {
      env: { CHATOPENAII_DATA_DIR: dataDir, CHATOPENAII_LOG_LEVEL: 'warn' }, input: 'whatever123\n',
    });
    assert.notEqual(dup.code, 0, 'duplicate email must fail');
    // Still closed after users exist.
    assertError(await new Client(url).post(REGISTER, { email: 'late@example.com', password: PW }), 403, 'registration_closed');
  });
});

test('session TTL: CHATOPENAII_SESSION_TTL=60 gives Max-Age=60 and a 60 s expiry', async () => {
  await withServer({ env: { CHATOPENAII_SESSION_TTL: '60' } }, async ({ url }) => {
    const c = new Client(url);
    const reg = await register(c, 'jill@example.com', PW);
    assert.equal(parseSetCookie(reg)?.attrs['max-age'], '60', reg.headers['set-cookie']?.join(' | '));
    const lg = await login(new Client(url), 'jill@example.com', PW);
    assert.equal(parseSetCookie(lg)?.attrs['max-age'], '60');
    const list = await c.get(SESSIONS);
    assert.equal(list.status, 200);
    for (const s of list.json.data) {
      const ttl = s.expires_at - s.created_at;
      assert.ok(ttl >= 59000 && ttl <= 61000, `session lifetime ${ttl} ms, want ~60000`);
    }
  });
});
