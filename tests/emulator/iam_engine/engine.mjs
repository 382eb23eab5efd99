// The emulator's policy engine: @cloud-copilot/iam-simulate behind a line
// protocol, one long-lived process per harness (iam_engine.py starts it).
//
// stdin:  one JSON object per line, {"id": N, "simulation": <Simulation>}
// stdout: one JSON object per line, in request order:
//   {"id": N, "result": "Allowed"|"ExplicitlyDenied"|"ImplicitlyDenied",
//    "by": {"identity", "resource", "scp", "rcp", "boundary", "session"},
//    "blocked": [...policy types that blocked an otherwise allowed request],
//    "ignored": [...context keys that do not apply to the action],
//    "allowedBy": {"identity": [...], "resource": [...]}: the Sids (or
//      indexes) of the Allow statements that matched, conditions included}
//   or {"id": N, "error": "..."} when the simulation's input is invalid.
// Nothing else is written to stdout; the process ends when stdin closes.
import { runSimulation } from '@cloud-copilot/iam-simulate'
import readline from 'node:readline'

const input = readline.createInterface({ input: process.stdin, crlfDelay: Infinity })

// The Allow statements of one policy type that matched the request
// (action, resource, principal and conditions): named by Sid, else by
// position (#1 is the first statement).
function statementNames(policyAnalysis) {
  return (policyAnalysis?.allowStatements ?? []).map((s) => s.statement.sid() ?? `#${s.statement.index()}`)
}

async function answer(line) {
  let id = null
  try {
    const request = JSON.parse(line)
    id = request.id ?? null
    const response = await runSimulation(request.simulation, { simulationMode: 'Strict' })
    if (response.resultType === 'error') {
      return { id, error: response.errors.message, details: response.errors }
    }
    // A "*" resource (actions that take none) is simulated per resource
    // type; its overall result is the decision.
    const single = response.resultType === 'single' ? response.result : response.results?.[0]
    const analysis = single?.analysis || {}
    return {
      id,
      result: response.overallResult,
      by: {
        identity: analysis.identityAnalysis?.result ?? null,
        resource: analysis.resourceAnalysis?.result ?? null,
        scp: analysis.scpAnalysis?.result ?? null,
        rcp: analysis.rcpAnalysis?.result ?? null,
        boundary: analysis.permissionBoundaryAnalysis?.result ?? null,
        session: analysis.sessionAnalysis?.result ?? null
      },
      blocked: analysis.blockedBy ?? [],
      ignored: single?.ignoredContextKeys ?? [],
      allowedBy: {
        identity: statementNames(analysis.identityAnalysis),
        resource: statementNames(analysis.resourceAnalysis)
      },
      sameAccount: analysis.sameAccount ?? null
    }
  } catch (err) {
    return { id, error: String((err && err.message) || err) }
  }
}

for await (const line of input) {
  if (!line.trim()) continue
  process.stdout.write(JSON.stringify(await answer(line)) + '\n')
}
