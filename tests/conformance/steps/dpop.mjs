// RFC 9449 DPoP: a sender-constrained client_credentials token (answering the server's
// nonce challenge, §8), then a protected resource request with a fresh proof (§7), and
// the same token presented as a plain bearer token refused.

import * as oauth from 'oauth4webapi';

import { check } from './check.mjs';

// One nonce challenge from the token endpoint and one from the resource server (§8, §9).
const NONCE_RETRIES = 1;

async function withNonceRetry(attempt) {
  for (let tries = 0; ; tries += 1) {
    try {
      return await attempt();
    } catch (err) {
      if (tries < NONCE_RETRIES && oauth.isDPoPNonceError(err)) continue;
      throw err;
    }
  }
}

export const dpopClientCredentials = {
  name: 'dpop',
  needs: ['discovery'],
  skipReason(context) {
    if (!context.as.dpop_signing_alg_values_supported?.length) return 'DPoP not deployed yet (no dpop_signing_alg_values_supported in metadata)';
    return null;
  },
  async run(context, signal) {
    const { as, config } = context;
    const credentials = config.dpop_client ?? config.confidential;
    const client = { client_id: credentials.client_id };
    const auth = oauth.ClientSecretBasic(credentials.client_secret);
    const alg = as.dpop_signing_alg_values_supported.includes('ES256') ? 'ES256' : as.dpop_signing_alg_values_supported[0];
    const DPoP = oauth.DPoP(client, await oauth.generateKeyPair(alg));
    const result = await withNonceRetry(async () => {
      const response = await oauth.clientCredentialsGrantRequest(as, client, auth,
        new URLSearchParams({ scope: credentials.scope }), { DPoP, signal });
      return oauth.processClientCredentialsResponse(as, client, response);
    });
    check(result.token_type === 'dpop', `token_type ${result.token_type}, expected DPoP`);
    const resource = new URL(config.resource_url);
    const response = await withNonceRetry(() => oauth.protectedResourceRequest(
      result.access_token, 'GET', resource, new Headers(), null, { DPoP, signal }));
    check(response.status === 200, `protected resource answered ${response.status} to a DPoP request`);
    const bearer = await fetch(resource, { headers: { authorization: `Bearer ${result.access_token}` }, signal });
    check(bearer.status === 401, `a DPoP-bound token used as a bearer token got ${bearer.status}, expected 401`);
    return { alg, token_type: result.token_type, resource_status: response.status, as_bearer: bearer.status };
  },
};
