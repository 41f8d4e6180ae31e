// A real OpenID Provider for Stagger's sign-in tests, built on the `oidc-provider` package.
//
// Usage: node server.js <config.json>, where the file holds
//   {"port": 4100, "clients": [{"client_id", "client_secret", "redirect_uris": [...]}]}
// The issuer is http://127.0.0.1:<port>. Any login name is accepted on the provider's own
// development sign-in page (the password is ignored) and becomes the account's email, so a
// test signs in as whoever it needs; a login containing "+unverified" has email_verified false.
// Consent is granted without asking (first-party clients). Prints "ready <issuer>" when
// listening.
import { readFileSync } from 'node:fs';
import Provider from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const issuer = `http://127.0.0.1:${config.port}`;

const provider = new Provider(issuer, {
  clients: config.clients.map((client) => ({
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    ...client,
  })),
  claims: { openid: ['sub'], email: ['email', 'email_verified'] },
  // Put the scope's claims in the ID token, as Entra ID and Google do.
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  cookies: { keys: ['stagger-test-provider-cookie-key'] },
  features: { devInteractions: { enabled: true } },
  async findAccount(ctx, id) {
    return {
      accountId: id,
      async claims() {
        return { sub: id, email: id, email_verified: !id.includes('+unverified') };
      },
    };
  },
  async loadExistingGrant(ctx) {
    const grantId =
      ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) {
      return ctx.oidc.provider.Grant.find(grantId);
    }
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope('openid email profile');
    await grant.save();
    return grant;
  },
});

const server = provider.listen(config.port, '127.0.0.1', () => {
  console.log(`ready ${issuer}`);
});

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
