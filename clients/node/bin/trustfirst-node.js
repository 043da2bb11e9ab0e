#!/usr/bin/env node
'use strict';
// Resolve a customer, record their consent, and ask for a decision; print the three
// responses as one JSON object on stdout. A failed call prints its status code and
// message on stderr and exits with status 1.
//
// Usage: trustfirst-node --email ana@example.com [--loyalty-id L-1] [--phone +44...]
//          [--touchpoint checkout] [--channel CHANNEL_WEB]
//          [--purpose PURPOSE_PERSONALISATION --purpose PURPOSE_MARKETING]
//          [--identity HOST:PORT] [--consent HOST:PORT] [--decision HOST:PORT]
//          [--timeout-ms 5000]
// Addresses default to $TRUSTFIRST_<SERVICE>_TARGET, else the ports of `trustfirst up`.

const { parseArgs } = require('node:util');
const grpc = require('@grpc/grpc-js');
const { loadClients, unary } = require('../lib/stubs');

const DEFAULT_TARGETS = {
  identity: '127.0.0.1:50051',
  consent: '127.0.0.1:50052',
  decision: '127.0.0.1:50053',
};

// Each identifier option and the kind it sends.
const IDENTIFIER_OPTIONS = {
  email: 'IDENTIFIER_KIND_EMAIL',
  phone: 'IDENTIFIER_KIND_PHONE',
  'loyalty-id': 'IDENTIFIER_KIND_LOYALTY_ID',
  'account-id': 'IDENTIFIER_KIND_ACCOUNT_ID',
};

function readOptions(argv) {
  const options = {
    touchpoint: { type: 'string', default: 'checkout' },
    channel: { type: 'string', default: 'CHANNEL_WEB' },
    purpose: { type: 'string', multiple: true },
    source: { type: 'string', default: 'node-client' },
    'notice-version': { type: 'string', default: '2026-01' },
    'timeout-ms': { type: 'string', default: '5000' },
  };
  for (const name of [...Object.keys(IDENTIFIER_OPTIONS), ...Object.keys(DEFAULT_TARGETS)]) {
    options[name] = { type: 'string' };
  }
  const { values } = parseArgs({ args: argv, options, strict: true });
  return values;
}

function identifiersOf(values) {
  const identifiers = [];
  for (const [option, kind] of Object.entries(IDENTIFIER_OPTIONS)) {
    if (values[option] !== undefined) {
      identifiers.push({ kind, value: values[option] });
    }
  }
  if (identifiers.length === 0) {
    throw new Error('missing identifier: pass --email, --phone, --loyalty-id or --account-id');
  }
  return identifiers;
}

function targetOf(values, service) {
  const variable = `TRUSTFIRST_${service.toUpperCase()}_TARGET`;
  return values[service] || process.env[variable] || DEFAULT_TARGETS[service];
}

async function run(values) {
  const clients = loadClients();
  const credentials = grpc.credentials.createInsecure();
  const identity = new clients.IdentityService(targetOf(values, 'identity'), credentials);
  const consent = new clients.ConsentService(targetOf(values, 'consent'), credentials);
  const decision = new clients.DecisionService(targetOf(values, 'decision'), credentials);
  const timeoutMs = Number(values['timeout-ms']);
  const purposes = values.purpose || ['PURPOSE_PERSONALISATION', 'PURPOSE_MARKETING'];

  try {
    const resolved = await unary(identity, 'Resolve', {
      identifiers: identifiersOf(values),
      source: values.source,
    }, timeoutMs);

    const recorded = await unary(consent, 'RecordConsent', {
      subject_id: resolved.profile_id,
      source: values.source,
      notice_version: values['notice-version'],
      changes: purposes.map((purpose) => ({
        purpose,
        channel: values.channel,
        action: 'CONSENT_ACTION_GRANT',
      })),
    }, timeoutMs);

    const decided = await unary(decision, 'Decide', {
      profile_id: resolved.profile_id,
      touchpoint: values.touchpoint,
      channel: values.channel,
    }, timeoutMs);

    return { resolve: resolved, record_consent: recorded, decide: decided };
  } finally {
    identity.close();
    consent.close();
    decision.close();
  }
}

function describeError(error) {
  if (typeof error.code === 'number') {
    const name = Object.keys(grpc.status).find((key) => grpc.status[key] === error.code);
    return `${name}: ${error.details}`;
  }
  return error.message;
}

async function main() {
  let values;
  try {
    values = readOptions(process.argv.slice(2));
  } catch (error) {
    process.stderr.write(`trustfirst-node: ${error.message}\n`);
    process.exit(2);
  }
  try {
    const result = await run(values);
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  } catch (error) {
    process.stderr.write(`trustfirst-node: ${describeError(error)}\n`);
    process.exit(1);
  }
}

main();
