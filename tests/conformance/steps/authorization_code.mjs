// RFC 6749 §4.1 authorization code with PKCE S256 (RFC 7636) and RFC 9207 `iss` in the
// authorization response, through the server's own login and consent pages.

import * as oauth from 'oauth4webapi';

import { check, expectOAuthError } from './check.mjs';
import { authorizeThroughLogin } from './login_form.mjs';

export function authorizationCodeSkipReason(context) {
  if (!context.as.authorization_endpoint) return 'authorization endpoint not deployed yet (no authorization_endpoint in metadata)';
  if (!context.as.grant_types_supported?.includes('authorization_code')) return 'authorization_code grant not deployed yet';
  if (!context.config.web_client || !context.config.user) return 'no redirect-URI client and user were provisioned';
  return null;
}

function web(context) {
  const { client_id, client_secret } = context.config.web_client;
  return { client: { client_id }, auth: oauth.ClientSecretBasic(client_secret) };
}

export const authorizationCode = {
  name: 'authorization_code_pkce',
  needs: ['discovery'],
  skipReason: authorizationCodeSkipReason,
  async run(context, signal) {
    const { as, config } = context;
    const { client, auth } = web(context);
    const { redirect_uri: redirectUri, scope } = config.web_client;
    check(as.code_challenge_methods_supported?.includes('S256') && !as.code_challenge_methods_supported.includes('plain'),
      'metadata must advertise S256 and not plain', as.code_challenge_methods_supported);
    check(as.authorization_response_iss_parameter_supported === true, 'metadata does not advertise RFC 9207 iss');
    const codeVerifier = oauth.generateRandomCodeVerifier();
    const state = oauth.generateRandomState();
    const url = new URL(as.authorization_endpoint);
    url.search = new URLSearchParams({
      response_type: 'code',
      client_id: client.client_id,
      redirect_uri: redirectUri,
      scope,
      state,
      code_challenge: await oauth.calculatePKCECodeChallenge(codeVerifier),
      code_challenge_method: 'S256',
    }).toString();
    const callback = await authorizeThroughLogin(url, config.user, redirectUri, signal);
    const params = oauth.validateAuthResponse(as, client, callback, state);
    const response = await oauth.authorizationCodeGrantRequest(as, client, auth, params, redirectUri, codeVerifier, { signal });
    const result = await oauth.processAuthorizationCodeResponse(as, client, response);
    check(result.token_type === 'bearer', `token_type ${result.token_type}`);
    check(typeof result.refresh_token === 'string' || !as.grant_types_supported.includes('refresh_token'),
      'no refresh_token although the server supports the refresh_token grant');
    const claims = await oauth.validateJwtAccessToken(as, new Request(config.resource_url, {
      headers: { authorization: `Bearer ${result.access_token}` },
    }), config.audience, { signal });
    context.codeFlow = { params, codeVerifier, result };
    return { scope: result.scope, sub: claims.sub, refresh_token: typeof result.refresh_token === 'string' };
  },
};

export const authorizationCodeReuse = {
  name: 'authorization_code_reuse_rejected',
  needs: ['authorization_code_pkce'],
  async run(context, signal) {
    const { as, config, codeFlow } = context;
    const { client, auth } = web(context);
    await expectOAuthError(async () => {
      const response = await oauth.authorizationCodeGrantRequest(
        as, client, auth, codeFlow.params, config.web_client.redirect_uri, codeFlow.codeVerifier, { signal });
      await oauth.processAuthorizationCodeResponse(as, client, response);
    }, 'invalid_grant', 'a second redemption of the same code');
    return { error: 'invalid_grant' };
  },
};
