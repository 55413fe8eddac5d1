#!/usr/bin/env node
// Compile contracts/*.sol with the npm `solc` package (package.json pins the version) and write
// src/nespay/chains/contracts/<Name>.json: {abi, bytecode, solc, source_sha256, ...}. The JSON is
// committed beside the Python code so nothing at runtime needs node.
//
//   node scripts/compile_contracts.mjs          # compile and (re)write the artifacts
//   node scripts/compile_contracts.mjs --check  # compile in memory; exit 1 if a shipped artifact
//                                               # is missing or differs (bytecode, ABI, source hash)
//
// Settings: optimizer on (200 runs), evmVersion "paris" (no PUSH0), so the bytecode runs on every
// anvil hardfork (anvil 1.7.1 defaults to the latest) and on chains that never adopted Shanghai.
// The bytecode ends with solc's metadata hash, so any source change (even a comment) changes it.

import { createHash } from 'node:crypto'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import solc from 'solc'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
const OUT_DIR = join(ROOT, 'src', 'nespay', 'chains', 'contracts')
const CONTRACTS = ['TestToken', 'BatchSender'] // contracts/<Name>.sol defines contract <Name>
const EVM_VERSION = 'paris'
const OPTIMIZER_RUNS = 200

const check = process.argv.includes('--check')
const unknown = process.argv.slice(2).filter((arg) => arg !== '--check')
if (unknown.length > 0) {
  console.error(`usage: node scripts/compile_contracts.mjs [--check] (unknown: ${unknown.join(' ')})`)
  process.exit(2)
}

const solcVersion = solc.version().split('+')[0] // "0.8.37+commit.f401782d.Emscripten.clang"
const sources = {}
for (const name of CONTRACTS) {
  sources[`contracts/${name}.sol`] = { content: readFileSync(join(ROOT, 'contracts', `${name}.sol`), 'utf8') }
}
const input = {
  language: 'Solidity',
  sources,
  settings: {
    optimizer: { enabled: true, runs: OPTIMIZER_RUNS },
    evmVersion: EVM_VERSION,
    outputSelection: { '*': { '*': ['abi', 'evm.bytecode.object'] } },
  },
}
const output = JSON.parse(solc.compile(JSON.stringify(input)))
let failed = false
for (const message of output.errors ?? []) {
  console.error(message.formattedMessage ?? message.message)
  if (message.severity === 'error') failed = true
}
if (failed) process.exit(1)

const problems = []
for (const name of CONTRACTS) {
  const path = `contracts/${name}.sol`
  const compiled = output.contracts?.[path]?.[name]
  if (!compiled) {
    console.error(`${path} does not define contract ${name}`)
    process.exit(1)
  }
  const artifact = {
    contract: name,
    source: path,
    source_sha256: createHash('sha256').update(sources[path].content, 'utf8').digest('hex'),
    solc: solcVersion,
    evm_version: EVM_VERSION,
    optimizer_runs: OPTIMIZER_RUNS,
    abi: compiled.abi,
    bytecode: `0x${compiled.evm.bytecode.object}`,
  }
  const target = join(OUT_DIR, `${name}.json`)
  if (check) {
    if (!existsSync(target)) {
      problems.push(`${name}.json is missing`)
      continue
    }
    const shipped = JSON.parse(readFileSync(target, 'utf8'))
    for (const key of ['bytecode', 'source_sha256', 'solc', 'abi']) {
      if (JSON.stringify(shipped[key]) !== JSON.stringify(artifact[key])) {
        problems.push(`${name}.json: ${key} differs from a fresh compile`)
      }
    }
  } else {
    writeFileSync(target, `${JSON.stringify(artifact, null, 2)}\n`)
    console.log(`wrote ${target} (${(artifact.bytecode.length - 2) / 2} bytes of init code)`)
  }
}
if (problems.length > 0) {
  for (const problem of problems) console.error(problem)
  console.error('run `node scripts/compile_contracts.mjs` and commit the artifacts')
  process.exit(1)
}
if (check) console.log(`artifacts match a fresh compile with solc ${solcVersion}`)
