import { test } from 'node:test';
import assert from 'node:assert/strict';

import {
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  PermissionDeniedError,
  PsstError,
  ResourceExhaustedError,
  Status,
  UnauthenticatedError,
  UnavailableError,
  codeName,
  toPsstError,
} from '@psst/client';

const TABLE = [
  [Status.INVALID_ARGUMENT, 'INVALID_ARGUMENT', InvalidArgumentError, 'invalid_argument'],
  [Status.OUT_OF_RANGE, 'OUT_OF_RANGE', InvalidArgumentError, 'invalid_argument'],
  [Status.PERMISSION_DENIED, 'PERMISSION_DENIED', PermissionDeniedError, 'permission_denied'],
  [Status.NOT_FOUND, 'NOT_FOUND', NotFoundError, 'not_found'],
  [Status.UNAVAILABLE, 'UNAVAILABLE', UnavailableError, 'unavailable'],
  [Status.UNAUTHENTICATED, 'UNAUTHENTICATED', UnauthenticatedError, 'unauthenticated'],
  [Status.FAILED_PRECONDITION, 'FAILED_PRECONDITION', FailedPreconditionError, 'failed_precondition'],
  [Status.RESOURCE_EXHAUSTED, 'RESOURCE_EXHAUSTED', ResourceExhaustedError, 'resource_exhausted'],
] as const;

for (const [code, name, Subclass, kind] of TABLE) {
  test(`status ${code} maps to ${Subclass.name}`, () => {
    const err = PsstError.from(code, 'the agent said so', { reference: 'local:x' });
    assert.ok(err instanceof Subclass);
    assert.ok(err instanceof PsstError);
    assert.ok(err instanceof Error);
    assert.equal(err.code, code);
    assert.equal(err.codeName, name);
    assert.equal(err.kind, kind);
    assert.equal(err.name, Subclass.name);
    assert.equal(err.details, 'the agent said so');
    assert.equal(err.message, `${name}: the agent said so`);
    assert.equal(err.reference, 'local:x');
  });
}

test('codes without a subclass are plain PsstErrors of kind other', () => {
  for (const code of [Status.UNKNOWN, Status.INTERNAL, Status.DEADLINE_EXCEEDED, Status.CANCELLED, Status.UNIMPLEMENTED]) {
    const err = PsstError.from(code, 'x');
    assert.equal(Object.getPrototypeOf(err), PsstError.prototype);
    assert.equal(err.kind, 'other');
  }
  assert.equal(PsstError.from(Status.INTERNAL, 'x').codeName, 'INTERNAL');
  assert.equal(codeName(99), 'CODE_99');
});

test('toPsstError keeps a grpc-js error code and details', () => {
  const serviceError = Object.assign(new Error('5 NOT_FOUND: secret local:a not found'), {
    code: Status.NOT_FOUND,
    details: 'secret local:a not found',
  });
  const err = toPsstError(serviceError);
  assert.ok(err instanceof NotFoundError);
  assert.equal(err.details, 'secret local:a not found');
  assert.equal(err.cause, serviceError);
});

test('toPsstError turns anything else into UNKNOWN and leaves PsstErrors alone', () => {
  const err = toPsstError(new TypeError('boom'));
  assert.equal(err.code, Status.UNKNOWN);
  assert.equal(err.details, 'boom');
  const same = PsstError.from(Status.NOT_FOUND, 'x');
  assert.equal(toPsstError(same), same);
});
