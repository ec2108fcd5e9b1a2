// The one error type of src/infra that is the user's to fix (a missing package, a data folder in
// use): its message is a single line meant to be printed as it is, without a stack trace.

export class ServiceSetupError extends Error {
  override name = 'ServiceSetupError';
}
