// The conformance steps, in the order they run; later steps use what earlier ones left
// in the shared context (the discovered metadata, tokens).

import { authorizationCode, authorizationCodeReuse } from './authorization_code.mjs';
import { clientCredentialsBasic, clientCredentialsPost } from './client_credentials.mjs';
import { discovery } from './discovery.mjs';
import { dpopClientCredentials } from './dpop.mjs';
import { introspectionActive, introspectionAfterRevocation, revocation, revocationOfUnknownToken } from './introspection_revocation.mjs';
import { refreshTokenRotation } from './refresh_token.mjs';
import { accessTokenProfile } from './rfc9068_access_token.mjs';

export const STEPS = [
  discovery,
  clientCredentialsBasic,
  clientCredentialsPost,
  accessTokenProfile,
  introspectionActive,
  revocation,
  introspectionAfterRevocation,
  revocationOfUnknownToken,
  authorizationCode,
  // Before the reuse step: presenting a used code again revokes the tokens issued from
  // it (RFC 6749 §4.1.2), this refresh token's family included.
  refreshTokenRotation,
  authorizationCodeReuse,
  dpopClientCredentials,
];
