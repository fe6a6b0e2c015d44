// A real OAuth2 authorization server for the runtime's connect-flow tests:
// panva's oidc-provider (OpenID certified) on 127.0.0.1, with its dev login
// and consent pages so a test can play the browser with plain HTTP.
//
//   node server.mjs [PORT]            (PORT or env PORT; default 0 = any free port)
//
// Environment:
//   REDIRECT_URIS     comma-separated redirect URIs of the one client (required)
//   ACCESS_TOKEN_TTL  access-token lifetime in seconds (default 3600), short to force a refresh
//   TOKEN_DELAY_MS    how late the token endpoint answers (default 0), so concurrent
//                     renewals overlap when a client lets them
//
// The first line on stdout is `listening http://127.0.0.1:PORT`; the issuer is
// that URL. Everything else the provider says goes to stderr. The server exits
// when its stdin closes.
//
// What a client meets:
//   GET  /auth   response_type=code, client_id, redirect_uri (optional only
//                while the client has a single one), scope=reports (no `openid`
//                needed), state, code_challenge + code_challenge_method=S256
//                (required). The redirect back carries code, state and iss (RFC 9207).
//   POST /token  client_secret_basic only (credentials in the body are
//                refused, see below); every code exchange returns a refresh
//                token, every refresh a new one. Presenting a rotated-out
//                refresh token is invalid_grant AND revokes the whole grant
//                (the newest refresh and access tokens die with it).
//   /interaction/:uid  the dev login (any login/password) and consent pages;
//                GET /interaction/:uid/abort denies (error=access_denied).
//   GET  /__test/token-requests  token POSTs by grant_type, and those refused
//                for lack of basic auth as `without_basic_auth` (test-only).
import http from 'node:http';
import Provider from 'oidc-provider';

// Fixed test credentials: the harness (tests/oauth_support) uses the same values.
const CLIENT_ID = 'integration-test-client';
const CLIENT_SECRET = 'integration-test-secret';

const redirectUris = (process.env.REDIRECT_URIS ?? '').split(',').map((uri) => uri.trim()).filter(Boolean);
if (redirectUris.length === 0) {
  console.error('REDIRECT_URIS must list at least one redirect URI (comma-separated)');
  process.exit(2);
}
const accessTokenTtl = Number(process.env.ACCESS_TOKEN_TTL ?? 3600);
const tokenDelayMs = Number(process.env.TOKEN_DELAY_MS ?? 0);
if (!Number.isInteger(accessTokenTtl) || accessTokenTtl <= 0) {
  console.error(`ACCESS_TOKEN_TTL must be a positive number of seconds, not ${process.env.ACCESS_TOKEN_TTL}`);
  process.exit(2);
}

// POSTs to the token endpoint by grant_type, failed ones included, so a test
// can assert how many exchanges and refreshes the runtime made.
const tokenRequests = {};

// Listen first: the issuer must carry the port, and port 0 only has one once bound.
const server = http.createServer();
await new Promise((resolve) => server.listen(Number(process.argv[2] ?? process.env.PORT ?? 0), '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients: [{
    client_id: CLIENT_ID,
    client_secret: CLIENT_SECRET,
    token_endpoint_auth_method: 'client_secret_basic',
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    redirect_uris: redirectUris,
  }],
  // `reports` is a plain OAuth2 scope; `openid` is optional (no ID token without it).
  scopes: ['openid', 'offline_access', 'reports'],
  pkce: { required: () => true, methods: ['S256'] },
  // A refresh token with every code, without asking for offline_access...
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  // ...and a new one on every refresh (the default rotates only public clients' tokens).
  rotateRefreshToken: () => true,
  ttl: { AccessToken: accessTokenTtl },
  // Signs the interaction and session cookies; fixed because nothing outlives the process.
  cookies: { keys: ['integration-test-cookie-key'] },
  features: {
    devInteractions: { enabled: true },
    // POST /token/introspection (client_secret_basic): how a test's resource
    // API learns whether an access token is still active.
    introspection: { enabled: true, allowedPolicy: async () => true },
  },
});

provider.use(async (ctx, next) => {
  if (ctx.method === 'GET' && ctx.path === '/__test/token-requests') {
    ctx.body = tokenRequests;
    return;
  }
  // oidc-provider takes a client_secret_basic client's secret from the body
  // as well; refused here, so a client posting its secret fails as it would at
  // a provider holding to the registered method. Counted before any body is read.
  if (ctx.method === 'POST' && ctx.path === '/token' && !/^basic /i.test(ctx.get('authorization'))) {
    tokenRequests.without_basic_auth = (tokenRequests.without_basic_auth ?? 0) + 1;
    ctx.status = 401;
    ctx.set('www-authenticate', 'Basic realm="token"');
    ctx.body = { error: 'invalid_client', error_description: 'client_secret_basic is required' };
    return;
  }
  if (ctx.method === 'POST' && ctx.path === '/token' && tokenDelayMs > 0) {
    await new Promise((resolve) => setTimeout(resolve, tokenDelayMs));
  }
  await next();
  // Counted after the provider parsed the body: the grant_type is in ctx.oidc.params.
  if (ctx.method === 'POST' && ctx.path === '/token') {
    const grantType = ctx.oidc?.params?.grant_type ?? 'unknown';
    tokenRequests[grantType] = (tokenRequests[grantType] ?? 0) + 1;
  }
});

server.on('request', provider.callback());
console.log(`listening ${issuer}`);

// The test holds our stdin: when it closes (the test ended, or died without
// killing us) we exit, so no server outlives its test.
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
