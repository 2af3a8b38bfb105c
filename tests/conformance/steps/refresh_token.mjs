// RFC 6749 §6 refresh, with rotation (RFC 9700 §4.14.2): every use returns a new refresh
// token. Reuse detection (family revocation) is the e2e tests' business: a grace window
// for lost responses makes its outcome depend on timing.

import * as oauth from 'oauth4webapi';

import { check } from './check.mjs';

export const refreshTokenRotation = {
  name: 'refresh_token_rotation',
  needs: ['authorization_code_pkce'],
  skipReason(context) {
    if (!context.as.grant_types_supported?.includes('refresh_token')) return 'refresh_token grant not deployed yet';
    if (typeof context.codeFlow.result.refresh_token !== 'string') return 'the authorization code flow returned no refresh token';
    return null;
  },
  async run(context, signal) {
    const { as, config } = context;
    const { client_id, client_secret } = config.web_client;
    const client = { client_id };
    const auth = oauth.ClientSecretBasic(client_secret);
    let refreshToken = context.codeFlow.result.refresh_token;
    const seen = new Set([refreshToken]);
    for (let round = 0; round < 2; round += 1) {
      const response = await oauth.refreshTokenGrantRequest(as, client, auth, refreshToken, { signal });
      const result = await oauth.processRefreshTokenResponse(as, client, response);
      check(typeof result.refresh_token === 'string', 'no rotated refresh_token');
      check(!seen.has(result.refresh_token), 'the refresh token was not rotated');
      seen.add(result.refresh_token);
      await oauth.validateJwtAccessToken(as, new Request(config.resource_url, {
        headers: { authorization: `Bearer ${result.access_token}` },
      }), config.audience, { signal });
      refreshToken = result.refresh_token;
    }
    return { rotations: 2 };
  },
};
