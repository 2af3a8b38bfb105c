// Assertions of the driver itself, on top of what oauth4webapi enforces.

export class ConformanceError extends Error {
  constructor(message, cause) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'ConformanceError';
  }
}

export function check(condition, message, cause) {
  if (!condition) throw new ConformanceError(message, cause);
}

// Runs `attempt` and expects oauth4webapi to throw an RFC 6749 §5.2 error `code`.
export async function expectOAuthError(attempt, code, what) {
  try {
    await attempt();
  } catch (err) {
    check(err?.error === code, `${what}: expected error "${code}", got ${err?.error ?? err?.message}`,
      { name: err?.name, code: err?.code, error: err?.error, status: err?.status });
    return err;
  }
  throw new ConformanceError(`${what}: the server accepted it`);
}
