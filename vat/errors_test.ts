import assert from "node:assert/strict";
import {
  ConflictError,
  errorOfHttpStatus,
  httpStatusOf,
  IntegrityError,
  NotFoundError,
  PermanentError,
  UsageError,
  VatError,
} from "./errors.ts";

Deno.test("httpStatusOf() and errorOfHttpStatus() map the error classes both ways", () => {
  const pairs: [VatError, number][] = [
    [new UsageError("u"), 400],
    [new NotFoundError("n"), 404],
    [new ConflictError("c"), 409],
    [new PermanentError("p"), 422],
  ];
  for (const [err, status] of pairs) {
    assert.equal(httpStatusOf(err), status);
    const back = errorOfHttpStatus(status, err.message);
    assert.equal(back.constructor, err.constructor);
    assert.equal(back.message, err.message);
  }
  assert.equal(httpStatusOf(new IntegrityError("i")), 500);
  assert.equal(httpStatusOf(new Error("e")), 500);
  assert.equal(errorOfHttpStatus(503, "busy").constructor, VatError);
});
