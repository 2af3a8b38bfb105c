// RFC 9068: oauth4webapi's resource-server check of a JWT access token — `typ: at+jwt`,
// the required claims, issuer, audience, and the signature against the issuer's JWKS.

import * as oauth from 'oauth4webapi';

import { check } from './check.mjs';

export const accessTokenProfile = {
  name: 'rfc9068_access_token',
  needs: ['client_credentials_basic'],
  async run(context, signal) {
    const { as, config, accessToken } = context;
    const request = new Request(config.resource_url, {
      headers: { authorization: `Bearer ${accessToken}` },
    });
    const claims = await oauth.validateJwtAccessToken(as, request, config.audience, { signal });
    check(claims.client_id === config.confidential.client_id, 'client_id claim differs', claims);
    check(typeof claims.scope === 'string', 'scope claim is not a string', claims);
    return { alg_checked: true, claims: Object.keys(claims).sort() };
  },
};
