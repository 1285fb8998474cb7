// Validates OpenRPC documents against the official meta-schema (from the
// @open-rpc/meta-schema package) with ajv; the meta-schema's JSON Schema
// definitions refer to @json-schema-tools/meta-schema, loaded beside it.
//
//   node tools/validate-openrpc.mjs DOC.json...
//
// Prints "valid FILE" per valid document; for an invalid one, prints its
// errors and exits with status 1.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import Ajv from "ajv";
import addFormats from "ajv-formats";

const require = createRequire(import.meta.url);
const { openrpcDocument } = require("@open-rpc/meta-schema");
const { jsonSchema } = require("@json-schema-tools/meta-schema");

// Both name their dialect by a URI ajv does not know; both are draft 7.
const withoutDialect = ({ $schema, ...schema }) => schema;
const ajv = new Ajv({ allErrors: true, strict: false });
addFormats(ajv);
// Referred to both with and without the trailing slash of its $id.
ajv.addSchema(withoutDialect(jsonSchema));
ajv.addSchema({ ...withoutDialect(jsonSchema), $id: "https://meta.json-schema.tools" });
const validate = ajv.compile(withoutDialect(openrpcDocument));
// wsduplex's `x-callbacks` holds method objects; the meta-schema lets any
// `x-` field through, so each is checked against its methodObject here.
const validateMethod = ajv.getSchema("https://meta.open-rpc.org/#/definitions/methodObject");

/** Every error of `doc`, as "path message" lines. */
function problems(doc) {
  const found = [];
  if (!validate(doc)) found.push(...validate.errors.map((e) => `${e.instancePath || "/"} ${e.message}`));
  (doc?.["x-callbacks"]?.methods ?? []).forEach((method, i) => {
    if (!validateMethod(method)) {
      found.push(...validateMethod.errors.map((e) => `/x-callbacks/methods/${i}${e.instancePath} ${e.message}`));
    }
  });
  return found;
}

let failed = false;
for (const file of process.argv.slice(2)) {
  const found = problems(JSON.parse(readFileSync(file, "utf8")));
  if (found.length === 0) {
    console.log(`valid ${file}`);
  } else {
    failed = true;
    console.log(`invalid ${file}`);
    for (const problem of found) console.log(`  ${problem}`);
  }
}
process.exit(failed ? 1 : 0);
