// RFC 8414 discovery: oauth4webapi demands HTTPS and an exact issuer match (§3.3).

import * as oauth from 'oauth4webapi';

import { check } from './check.mjs';

export const discovery = {
  name: 'discovery',
  async run(context, signal) {
    const issuer = new URL(context.config.issuer);
    const response = await oauth.discoveryRequest(issuer, { algorithm: 'oauth2', signal });
    const as = await oauth.processDiscoveryResponse(issuer, response);
    for (const endpoint of ['token_endpoint', 'jwks_uri', 'introspection_endpoint', 'revocation_endpoint']) {
      check(typeof as[endpoint] === 'string' && as[endpoint].startsWith('https://'),
        `metadata lacks an https ${endpoint}`, as);
    }
    context.as = as;
    return {
      issuer: as.issuer,
      grant_types_supported: as.grant_types_supported,
      authorization_endpoint: as.authorization_endpoint ?? null,
      dpop_signing_alg_values_supported: as.dpop_signing_alg_values_supported ?? null,
    };
  },
};
