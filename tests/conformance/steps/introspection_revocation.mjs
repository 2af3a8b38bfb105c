// RFC 7662 introspection and RFC 7009 revocation, with the token from client_credentials.

import * as oauth from 'oauth4webapi';

import { check } from './check.mjs';

function confidential(context) {
  const { client_id, client_secret } = context.config.confidential;
  return { client: { client_id }, auth: oauth.ClientSecretBasic(client_secret) };
}

async function introspect(context, signal, token) {
  const { client, auth } = confidential(context);
  const response = await oauth.introspectionRequest(context.as, client, auth, token, { signal });
  return oauth.processIntrospectionResponse(context.as, client, response);
}

export const introspectionActive = {
  name: 'introspection_active',
  needs: ['client_credentials_basic'],
  async run(context, signal) {
    const result = await introspect(context, signal, context.accessToken);
    check(result.active === true, 'a fresh token is not active', result);
    check(result.client_id === context.config.confidential.client_id, 'client_id differs', result);
    check(typeof result.scope === 'string', 'scope is not a string', result);
    check(result.iss === context.as.issuer, 'iss differs from the issuer', result);
    return { active: result.active, scope: result.scope, token_type: result.token_type };
  },
};

export const revocation = {
  name: 'revocation',
  needs: ['client_credentials_basic'],
  async run(context, signal) {
    const { client, auth } = confidential(context);
    const response = await oauth.revocationRequest(context.as, client, auth, context.accessToken, { signal });
    check(response.status === 200, `revocation answered ${response.status}, RFC 7009 §2.2 says 200`);
    await oauth.processRevocationResponse(response);
    return { status: 200 };
  },
};

export const introspectionAfterRevocation = {
  name: 'introspection_after_revocation',
  needs: ['revocation'],
  async run(context, signal) {
    const result = await introspect(context, signal, context.accessToken);
    check(result.active === false, 'a revoked token is still active', result);
    check(Object.keys(result).length === 1, 'an inactive token leaks more than `active`', result);
    return { active: result.active };
  },
};

export const revocationOfUnknownToken = {
  name: 'revocation_unknown_token',
  needs: ['discovery'],
  async run(context, signal) {
    const { client, auth } = confidential(context);
    const response = await oauth.revocationRequest(context.as, client, auth, 'never-issued-by-this-server', { signal });
    await oauth.processRevocationResponse(response);
    return { status: response.status };
  },
};
