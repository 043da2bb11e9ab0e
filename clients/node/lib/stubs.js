'use strict';
// Client stubs of the Trustfirst services, generated at load time from the .proto files
// by @grpc/proto-loader, so they always match the contracts in protos/.

const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

// The repository's protos/ folder; TRUSTFIRST_PROTOS points at another copy.
const DEFAULT_PROTOS = path.resolve(__dirname, '..', '..', '..', 'protos');

const PROTO_FILES = [
  'trustfirst/identity/v1/identity.proto',
  'trustfirst/consent/v1/consent.proto',
  'trustfirst/decision/v1/decision.proto',
];

// Field names stay as written in the .proto files (snake_case), enums travel as their
// names, and 64-bit integers as decimal strings, so nothing loses precision in JSON.
const LOADER_OPTIONS = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
};

/**
 * Load the three services' definitions from protosDir and return their client classes.
 * @param {string} [protosDir] folder that contains trustfirst/<service>/v1/*.proto
 */
function loadClients(protosDir = process.env.TRUSTFIRST_PROTOS || DEFAULT_PROTOS) {
  const definition = protoLoader.loadSync(PROTO_FILES, {
    ...LOADER_OPTIONS,
    includeDirs: [protosDir],
  });
  const loaded = grpc.loadPackageDefinition(definition);
  return {
    IdentityService: loaded.trustfirst.identity.v1.IdentityService,
    ConsentService: loaded.trustfirst.consent.v1.ConsentService,
    DecisionService: loaded.trustfirst.decision.v1.DecisionService,
  };
}

/**
 * Call a unary method and resolve with its response, or reject with the gRPC error.
 * @param {grpc.Client} client a client of one service
 * @param {string} method the RPC name, such as 'Resolve'
 * @param {object} request the request message as a plain object
 * @param {number} timeoutMs deadline of the call, in milliseconds
 */
function unary(client, method, request, timeoutMs) {
  const deadline = new Date(Date.now() + timeoutMs);
  return new Promise((resolve, reject) => {
    client[method](request, { deadline }, (error, response) => {
      if (error) {
        reject(error);
      } else {
        resolve(response);
      }
    });
  });
}

module.exports = { loadClients, unary, DEFAULT_PROTOS };
