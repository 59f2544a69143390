// A real OpenID Provider (panva/oidc-provider) for tokengate's interop suite.
//
// Nothing here is tokengate code: the tokens, the JWKS, discovery, RFC 7662
// introspection and RFC 7009 revocation all come from oidc-provider. This file
// only configures it and adds what the suite needs around it: a small admin
// listener (key rotation, stopping/starting the provider, minting deliberately
// bad tokens), a token store shared across rotations, and enforcement of each
// client's registered authentication method at introspection/revocation.
//
// Environment (everything binds to 127.0.0.1 only):
//   OIDC_PORT         port of the provider (0 = pick a free one); issuer is http://127.0.0.1:<port>
//   OIDC_ADMIN_PORT   port of the admin listener (0 = pick a free one)
//   OIDC_READY_FILE   where to write the ready document (JSON, see below); without it, printed on stdout
//
// The ready document: {issuer, admin, pid, resources, clients: {id: {secret, auth, alg?}}, keys}.
// Client secrets are random per run.
//
// Provider setup:
//   - client_credentials grant with resource indicators. Resource
//     https://api.tokengate.test issues JWT access tokens signed with the
//     algorithm of the requesting client: svc-rs256 → RS256, svc-es256 → ES256,
//     svc-eddsa → EdDSA. https://other.tokengate.test issues JWTs with another
//     audience; https://opaque.tokengate.test issues opaque tokens.
//   - access tokens carry `groups`, nested `realm_access.roles` and the
//     space-separated `scope` (scopes read, write, admin).
//   - introspection: clients introspector-basic (client_secret_basic) and
//     introspector-post (client_secret_post); revocation for the token's owner.
//
// Admin routes (http://127.0.0.1:<OIDC_ADMIN_PORT>):
//   GET  /state                      the ready document plus `running`, the current kids,
//                                    `requests` (count per method and path) and `client_auth_log`
//   POST /rotate?alg=RS256|ES256|EdDSA   new key with a new kid at the front of the JWKS;
//                                    new tokens of that algorithm are signed with it
//   POST /stop                       close the provider's listener and drop its connections
//   POST /start                      listen again on the same port (same keys, same tokens)
//   POST /forge  {claims, header, key: "current"|"stranger"|"public-as-hmac", alg, exp_in}
//                                    a JWT with the given claims/header (null removes one),
//                                    signed by the provider's current key of `alg`, by a key
//                                    the provider never published, or HS256 keyed with the
//                                    RS256 public key PEM (algorithm confusion)
// SIGUSR2 rotates every algorithm; SIGTERM/SIGINT exit.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';

import Provider from 'oidc-provider';

const HOST = '127.0.0.1';
const API = 'https://api.tokengate.test';
const OTHER = 'https://other.tokengate.test';
const OPAQUE = 'https://opaque.tokengate.test';
const RESOURCES = { api: API, other: OTHER, opaque: OPAQUE };
const SCOPES = 'read write admin';

// What each service client's tokens say about it.
const SERVICE_CLIENTS = {
  'svc-rs256': { alg: 'RS256', groups: ['engineering', 'ml-platform'], roles: ['reader', 'writer'] },
  'svc-es256': { alg: 'ES256', groups: ['finance'], roles: ['reader'] },
  'svc-eddsa': { alg: 'EdDSA', groups: ['ops', 'sre', 'on-call'], roles: ['admin', 'reader'] },
};
const INTROSPECTORS = {
  'introspector-basic': 'client_secret_basic',
  'introspector-post': 'client_secret_post',
};
const ALGS = ['RS256', 'ES256', 'EdDSA'];

const log = (...args) => console.error('[oidc]', ...args);
const secret = () => crypto.randomBytes(24).toString('base64url');

// ---------------------------------------------------------------- keys

const generation = { RS256: 0, ES256: 0, EdDSA: 0 };

function newKey(alg, prefix = '') {
  generation[alg] += 1;
  let pair;
  if (alg === 'RS256') pair = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  else if (alg === 'ES256') pair = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  else if (alg === 'EdDSA') pair = crypto.generateKeyPairSync('ed25519');
  else throw new Error(`unsupported alg ${alg}`);
  const jwk = pair.privateKey.export({ format: 'jwk' });
  const kid = `${prefix}${alg.toLowerCase()}-${generation[alg]}-${crypto.randomBytes(3).toString('hex')}`;
  return { ...jwk, kid, alg, use: 'sig' };
}

// Front of the list = used for signing (oidc-provider picks the first key of an alg).
let signingKeys = ALGS.map((alg) => newKey(alg));
// A key that is never published: for tokens with an unknown kid.
const strangerKeys = Object.fromEntries(ALGS.map((alg) => [alg, newKey(alg, 'unpublished-')]));

// ---------------------------------------------------------------- clients

const clients = {};
for (const [id, info] of Object.entries(SERVICE_CLIENTS)) {
  clients[id] = { secret: secret(), auth: 'client_secret_basic', alg: info.alg };
}
for (const [id, auth] of Object.entries(INTROSPECTORS)) {
  clients[id] = { secret: secret(), auth };
}

function clientMetadata() {
  return Object.entries(clients).map(([id, c]) => ({
    client_id: id,
    client_secret: c.secret,
    token_endpoint_auth_method: c.auth,
    grant_types: SERVICE_CLIENTS[id] ? ['client_credentials'] : [],
    response_types: [],
    redirect_uris: [],
    scope: SERVICE_CLIENTS[id] ? SCOPES : undefined,
  }));
}

// ---------------------------------------------------------------- storage

// Rotation builds a new Provider instance with the new key set; the default
// in-memory adapter is per instance, so tokens live in this store instead,
// shared by every instance for the life of the process.
const store = new Map();

class SharedMemoryAdapter {
  constructor(model) {
    this.model = model;
  }

  key(id) {
    return `${this.model}:${id}`;
  }

  static read(key) {
    const entry = store.get(key);
    if (!entry) return undefined;
    if (entry.expiresAt !== undefined && entry.expiresAt <= Date.now()) {
      store.delete(key);
      return undefined;
    }
    return entry.payload;
  }

  findBy(field, value) {
    const prefix = `${this.model}:`;
    for (const key of store.keys()) {
      if (key.startsWith(prefix)) {
        const payload = SharedMemoryAdapter.read(key);
        if (payload?.[field] === value) return payload;
      }
    }
    return undefined;
  }

  async upsert(id, payload, expiresIn) {
    const expiresAt = typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : undefined;
    store.set(this.key(id), { payload, expiresAt });
  }

  async find(id) {
    return SharedMemoryAdapter.read(this.key(id));
  }

  async findByUid(uid) {
    return this.findBy('uid', uid);
  }

  async findByUserCode(userCode) {
    return this.findBy('userCode', userCode);
  }

  async consume(id) {
    const payload = SharedMemoryAdapter.read(this.key(id));
    if (payload) payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) {
    store.delete(this.key(id));
  }

  async revokeByGrantId(grantId) {
    for (const [key, entry] of store) {
      if (entry.payload?.grantId === grantId) store.delete(key);
    }
  }
}

// ---------------------------------------------------------------- provider

let issuer; // set once the listener has its port
let provider; // the current Provider instance; replaced on rotation
let handler; // provider.callback() of the current instance

function buildProvider() {
  const p = new Provider(issuer, {
    adapter: SharedMemoryAdapter,
    clients: clientMetadata(),
    jwks: { keys: signingKeys },
    scopes: ['openid', ...SCOPES.split(' ')],
    cookies: { keys: [secret(), secret()] },
    enabledJWA: {
      // so discovery advertises (and the keystore may use) all three
      idTokenSigningAlgValues: ['RS256', 'ES256', 'EdDSA'],
    },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: {
        enabled: true,
        // only the two introspection clients may introspect other clients' tokens
        allowedPolicy: async (ctx, client, token) => client.clientId in INTROSPECTORS
          || client.clientId === token.clientId,
      },
      revocation: {
        enabled: true,
        // a client may revoke only its own tokens
        allowedPolicy: async (ctx, client, token) => client.clientId === token.clientId,
      },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => API,
        useGrantedResource: () => true,
        getResourceServerInfo: (ctx, resourceIndicator, client) => {
          const alg = SERVICE_CLIENTS[client.clientId]?.alg ?? 'RS256';
          switch (resourceIndicator) {
            case API:
            case OTHER:
              return {
                scope: SCOPES,
                audience: resourceIndicator,
                accessTokenTTL: 600,
                accessTokenFormat: 'jwt',
                jwt: { sign: { alg } },
              };
            case OPAQUE:
              return {
                scope: SCOPES,
                audience: resourceIndicator,
                accessTokenTTL: 600,
                accessTokenFormat: 'opaque',
              };
            default:
              throw new Provider.errors.InvalidTarget();
          }
        },
      },
    },
    extraTokenClaims: async (ctx, token) => {
      const info = SERVICE_CLIENTS[token.clientId];
      if (!info) return undefined;
      return { groups: info.groups, realm_access: { roles: info.roles } };
    },
    ttl: {
      ClientCredentials: (ctx, token) => token.resourceServer?.accessTokenTTL || 600,
    },
    findAccount: async () => undefined,
    renderError: async (ctx, out) => {
      ctx.type = 'json';
      ctx.body = out;
    },
  });
  p.on('server_error', (ctx, err) => log('server_error', err));
  p.on('grant.error', (ctx, err) => log('grant.error', err.message, err.error_description || ''));
  p.on('introspection.error', (ctx, err) => log('introspection.error', err.message));
  p.on('revocation.error', (ctx, err) => log('revocation.error', err.message));
  return p;
}

// ---------------------------------------------------------------- listeners

// oidc-provider accepts client_secret_basic and client_secret_post interchangeably
// for any client. To prove that a relying party authenticates the way its
// client is registered, introspection and revocation requests using the other
// method are refused here (401 invalid_client), and every such request is
// logged for GET /state (`client_auth_log`).
const clientAuthLog = [];
const STRICT_PATHS = new Set(['/token/introspection', '/token/revocation']);

function basicClientId(header) {
  const m = /^basic\s+(\S+)$/i.exec(header ?? '');
  if (!m) return undefined;
  const decoded = Buffer.from(m[1], 'base64').toString('utf8');
  const i = decoded.indexOf(':');
  if (i === -1) return undefined;
  try { return decodeURIComponent(decoded.slice(0, i).replace(/\+/g, '%20')); } catch { return undefined; }
}

async function strictClientAuth(req, res) {
  const path = req.url.split('?')[0];
  if (req.method !== 'POST' || !STRICT_PATHS.has(path)) return true;
  const raw = await readBody(req);
  req.body = raw; // oidc-provider parses an already read body from req.body
  const form = new URLSearchParams(raw);
  let clientId;
  let method;
  if (req.headers.authorization !== undefined) {
    clientId = basicClientId(req.headers.authorization);
    method = 'client_secret_basic';
  } else if (form.has('client_secret')) {
    clientId = form.get('client_secret') && form.get('client_id');
    method = 'client_secret_post';
  } else {
    method = 'none';
    clientId = form.get('client_id');
  }
  const registered = clients[clientId]?.auth;
  const accepted = !registered || registered === method;
  clientAuthLog.push({
    endpoint: path, client_id: clientId ?? null, method, registered: registered ?? null, accepted,
  });
  if (clientAuthLog.length > 200) clientAuthLog.shift();
  if (!accepted) {
    res.writeHead(401, {
      'content-type': 'application/json',
      'www-authenticate': 'Basic realm="oidc"',
    });
    res.end(JSON.stringify({
      error: 'invalid_client',
      error_description: `client ${clientId} is registered for ${registered}, not ${method}`,
    }));
    return false;
  }
  return true;
}

const requestCounts = {}; // "GET /jwks" -> n, for GET /state

const oidcServer = http.createServer(async (req, res) => {
  const route = `${req.method} ${req.url.split('?')[0]}`;
  requestCounts[route] = (requestCounts[route] ?? 0) + 1;
  try {
    if (await strictClientAuth(req, res)) handler(req, res);
  } catch (err) {
    log('request error', err);
    if (!res.headersSent) res.writeHead(400);
    res.end();
  }
});
oidcServer.keepAliveTimeout = 5000;
let oidcPort = Number(process.env.OIDC_PORT ?? 0);
let running = false;

function listen(server, port) {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, HOST, () => {
      server.off('error', reject);
      resolve(server.address().port);
    });
  });
}

async function startProvider() {
  if (running) return;
  oidcPort = await listen(oidcServer, oidcPort);
  running = true;
  log(`provider listening on ${issuer ?? `http://${HOST}:${oidcPort}`}`);
}

function stopProvider() {
  if (!running) return Promise.resolve();
  running = false;
  return new Promise((resolve) => {
    oidcServer.close(() => resolve());
    oidcServer.closeAllConnections();
    log('provider stopped');
  });
}

function publicKeys() {
  return signingKeys.map(({ kid, alg, kty }) => ({ kid, alg, kty }));
}

function rotate(alg) {
  if (!ALGS.includes(alg)) throw new Error(`alg must be one of ${ALGS.join(', ')}`);
  const key = newKey(alg);
  signingKeys = [key, ...signingKeys];
  provider = buildProvider();
  handler = provider.callback();
  log(`rotated ${alg}: new kid ${key.kid}`);
  return key.kid;
}

// Signs by hand (node:crypto) rather than with a JOSE library, so that headers
// a library would refuse (crit, alg/key mismatches) can be produced too.
function signJws(header, payload, alg, keyObject, hmacSecret) {
  const enc = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const input = `${enc(header)}.${enc(payload)}`;
  let sig;
  if (alg === 'HS256') sig = crypto.createHmac('sha256', hmacSecret).update(input).digest();
  else if (alg === 'RS256') sig = crypto.sign('sha256', Buffer.from(input), keyObject);
  else if (alg === 'ES256') sig = crypto.sign('sha256', Buffer.from(input), { key: keyObject, dsaEncoding: 'ieee-p1363' });
  else if (alg === 'EdDSA') sig = crypto.sign(null, Buffer.from(input), keyObject);
  else throw new Error(`cannot sign ${alg}`);
  return `${input}.${sig.toString('base64url')}`;
}

// key: "current" (the provider's signing key of `alg`), "stranger" (a key never
// published), or "public-as-hmac" (HS256 keyed with the PEM of the provider's
// current RS256 public key: the algorithm-confusion attack).
async function forge({
  claims = {}, header = {}, key = 'current', alg = 'RS256', exp_in: expIn = 300,
}) {
  if (!ALGS.includes(alg)) throw new Error(`alg must be one of ${ALGS.join(', ')}`);
  const now = Math.floor(Date.now() / 1000);
  const payload = {
    iss: issuer, aud: API, sub: 'forged-client', client_id: 'forged-client',
    iat: now, exp: now + expIn, jti: crypto.randomUUID(), ...claims,
  };
  for (const [k, v] of Object.entries(payload)) if (v === null) delete payload[k];
  if (key === 'public-as-hmac') {
    const jwk = signingKeys.find((k) => k.alg === 'RS256');
    const { d, p, q, dp, dq, qi, ...pub } = jwk;
    const pem = crypto.createPublicKey({ key: pub, format: 'jwk' }).export({ type: 'spki', format: 'pem' });
    return signJws({ alg: 'HS256', typ: 'at+jwt', kid: jwk.kid, ...header }, payload, 'HS256', null, pem);
  }
  const jwk = key === 'stranger' ? strangerKeys[alg] : signingKeys.find((k) => k.alg === alg);
  const keyObject = crypto.createPrivateKey({ key: jwk, format: 'jwk' });
  const head = { alg, typ: 'at+jwt', kid: jwk.kid, ...header };
  for (const [k, v] of Object.entries(head)) if (v === null) delete head[k];
  return signJws(head, payload, alg, keyObject);
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    let data = '';
    req.setEncoding('utf8');
    req.on('data', (c) => { data += c; if (data.length > 1e6) req.destroy(); });
    req.on('end', () => resolve(data));
    req.on('error', reject);
  });
}

function readyDocument(adminPort) {
  return {
    issuer,
    admin: `http://${HOST}:${adminPort}`,
    pid: process.pid,
    resources: RESOURCES,
    scopes: SCOPES.split(' '),
    clients: Object.fromEntries(Object.entries(clients).map(([id, c]) => [id, {
      ...c,
      ...(SERVICE_CLIENTS[id] ? { groups: SERVICE_CLIENTS[id].groups, roles: SERVICE_CLIENTS[id].roles } : {}),
    }])),
    keys: publicKeys(),
  };
}

let adminPort = Number(process.env.OIDC_ADMIN_PORT ?? 0);
const adminServer = http.createServer(async (req, res) => {
  const send = (status, body) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };
  try {
    const url = new URL(req.url, `http://${HOST}`);
    const route = `${req.method} ${url.pathname}`;
    if (route === 'GET /state') {
      return send(200, {
        ...readyDocument(adminPort), running, client_auth_log: clientAuthLog, requests: requestCounts,
      });
    }
    if (route === 'POST /rotate') {
      const kid = rotate(url.searchParams.get('alg') || 'RS256');
      return send(200, { kid, keys: publicKeys() });
    }
    if (route === 'POST /stop') {
      await stopProvider();
      return send(200, { running });
    }
    if (route === 'POST /start') {
      await startProvider();
      return send(200, { running });
    }
    if (route === 'POST /forge') {
      const text = await readBody(req);
      return send(200, { token: await forge(text ? JSON.parse(text) : {}) });
    }
    return send(404, { error: 'not_found', routes: ['GET /state', 'POST /rotate?alg=', 'POST /stop', 'POST /start', 'POST /forge'] });
  } catch (err) {
    log('admin error', err);
    return send(400, { error: String(err?.message ?? err) });
  }
});

// ---------------------------------------------------------------- main

process.on('SIGUSR2', () => { for (const alg of ALGS) rotate(alg); });
for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    oidcServer.closeAllConnections();
    adminServer.closeAllConnections();
    process.exit(0);
  });
}

// Bind first so that port 0 works: the issuer needs the real port.
oidcPort = await listen(oidcServer, oidcPort);
running = true;
issuer = `http://${HOST}:${oidcPort}`;
provider = buildProvider();
handler = provider.callback();
adminPort = await listen(adminServer, adminPort);
log(`provider ${issuer}, admin http://${HOST}:${adminPort}`);

const ready = JSON.stringify(readyDocument(adminPort));
if (process.env.OIDC_READY_FILE) {
  const tmp = `${process.env.OIDC_READY_FILE}.tmp`;
  fs.writeFileSync(tmp, ready, { mode: 0o600 });
  fs.renameSync(tmp, process.env.OIDC_READY_FILE);
} else {
  console.log(ready);
}
