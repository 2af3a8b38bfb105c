// RFC 6749 §4.4 client_credentials, authenticating with client_secret_basic and with
// client_secret_post (§2.3.1).

import * as oauth from 'oauth4webapi';

import { check } from './check.mjs';

async function grant(context, signal, authentication) {
  const { as, config } = context;
  const client = { client_id: config.confidential.client_id };
  const response = await oauth.clientCredentialsGrantRequest(
    as, client, authentication(config.confidential.client_secret),
    new URLSearchParams({ scope: config.confidential.scope }), { signal });
  check(response.headers.get('cache-control') === 'no-store',
    'token response lacks Cache-Control: no-store (RFC 6749 §5.1)');
  const result = await oauth.processClientCredentialsResponse(as, client, response);
  check(result.token_type === 'bearer', `token_type ${result.token_type}, expected bearer`);
  check(typeof result.expires_in === 'number' && result.expires_in > 0, 'no positive expires_in');
  check(result.scope === config.confidential.scope, `scope ${result.scope}, expected ${config.confidential.scope}`);
  return result;
}

export const clientCredentialsBasic = {
  name: 'client_credentials_basic',
  needs: ['discovery'],
  async run(context, signal) {
    const result = await grant(context, signal, oauth.ClientSecretBasic);
    context.accessToken = result.access_token;
    return { token_type: result.token_type, expires_in: result.expires_in, scope: result.scope };
  },
};

export const clientCredentialsPost = {
  name: 'client_credentials_post',
  needs: ['discovery'],
  async run(context, signal) {
    const result = await grant(context, signal, oauth.ClientSecretPost);
    context.postAccessToken = result.access_token;
    return { token_type: result.token_type, expires_in: result.expires_in, scope: result.scope };
  },
};
