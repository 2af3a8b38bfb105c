// Drives Strongroom's authorization server with oauth4webapi, an independent and strict
// OAuth 2.0 client library, and reports one outcome per conformance step as JSON.
//
// Input (stdin, JSON): { issuer, audience, resource_url, confidential: {client_id,
// client_secret}, dpop_client?, web_client?: {client_id, client_secret, redirect_uri,
// scope}, user?: {username, password}, only?: [step names] }.
// Output (stdout, JSON): { oauth4webapi, steps: [{ name, outcome: passed|failed|skipped,
// detail?|reason?|error? }] }. Exit status 0 when no step failed, 1 otherwise.
//
// Only the issuer given is contacted (HTTPS; trust comes from NODE_EXTRA_CA_CERTS).

import { readFileSync } from 'node:fs';

import { STEPS } from './steps/index.mjs';

// Every request of a step shares this bound: a hung server must not hang the test run.
const STEP_TIMEOUT_MS = 15_000;

function describeError(err) {
  const out = { name: err?.name, message: err?.message };
  for (const key of ['code', 'error', 'error_description', 'status']) {
    if (err?.[key] !== undefined) out[key] = err[key];
  }
  if (err?.cause instanceof Error) {
    out.cause = describeError(err.cause);
  } else if (err?.cause !== undefined) {
    try {
      out.cause = JSON.parse(JSON.stringify(err.cause instanceof URLSearchParams
        ? Object.fromEntries(err.cause) : err.cause));
    } catch {
      out.cause = String(err.cause);
    }
  }
  return out;
}

async function main() {
  const config = JSON.parse(readFileSync(0, 'utf8'));
  const version = JSON.parse(readFileSync(
    new URL('./node_modules/oauth4webapi/package.json', import.meta.url), 'utf8')).version;
  const context = { config };
  const results = [];
  for (const step of STEPS) {
    if (config.only && !config.only.includes(step.name)) continue;
    const missing = (step.needs ?? []).filter((name) => !results.some(
      (r) => r.name === name && r.outcome === 'passed'));
    if (missing.length) {
      const skipped = results.filter((r) => missing.includes(r.name) && r.outcome === 'skipped');
      results.push(skipped.length === missing.length
        ? { name: step.name, outcome: 'skipped', reason: skipped.map((r) => `${r.name} skipped: ${r.reason}`).join('; ') }
        : { name: step.name, outcome: 'failed', error: { message: `needs ${missing.join(', ')}, which did not pass` } });
      continue;
    }
    const reason = step.skipReason?.(context) ?? null;
    if (reason) {
      results.push({ name: step.name, outcome: 'skipped', reason });
      continue;
    }
    const signal = AbortSignal.timeout(STEP_TIMEOUT_MS);
    const started = performance.now();
    try {
      const detail = await step.run(context, signal);
      results.push({ name: step.name, outcome: 'passed', ms: Math.round(performance.now() - started), detail });
    } catch (err) {
      results.push({ name: step.name, outcome: 'failed', ms: Math.round(performance.now() - started), error: describeError(err) });
    }
  }
  process.stdout.write(`${JSON.stringify({ oauth4webapi: version, steps: results })}\n`);
  process.exitCode = results.some((r) => r.outcome === 'failed') ? 1 : 0;
}

await main();
