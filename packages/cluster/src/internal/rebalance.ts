/**
 * Assignment decisions as pure functions over a snapshot, so they can be tested alone (and by property).
 */

export interface RebalancePod {
  readonly key: string
  readonly version: string
}

export interface RebalanceState {
  readonly numberOfShards: number
  /** Registered, live pods. */
  readonly pods: ReadonlyArray<RebalancePod>
  /** Owner key per shard (`assignments[shard - 1]`); `undefined` = unassigned. Owners not in `pods` count as unassigned. */
  readonly assignments: ReadonlyArray<string | undefined>
}

export interface RebalancePlan {
  /** pod key -> shards to give it */
  readonly assignments: Map<string, Array<number>>
  /** pod key -> shards to take from it (before they are given elsewhere) */
  readonly unassignments: Map<string, Array<number>>
}

/** Compares dotted versions numerically part by part (`"1.10.0" > "1.9.2"`); non-numeric parts as strings. */
export const compareVersion = (a: string, b: string): -1 | 0 | 1 => {
  const left = a.split(".")
  const right = b.split(".")
  for (let i = 0; i < Math.max(left.length, right.length); i++) {
    const x = left[i] ?? "0"
    const y = right[i] ?? "0"
    const nx = Number(x)
    const ny = Number(y)
    if (Number.isFinite(nx) && Number.isFinite(ny)) {
      if (nx !== ny) return nx < ny ? -1 : 1
    } else if (x !== y) {
      return x < y ? -1 : 1
    }
  }
  return 0
}

const byKey = (a: RebalancePod, b: RebalancePod) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0)

const eligiblePods = (pods: ReadonlyArray<RebalancePod>): Array<RebalancePod> => {
  if (pods.length === 0) return []
  let max = pods[0]!.version
  for (const pod of pods) if (compareVersion(pod.version, max) > 0) max = pod.version
  return pods.filter((pod) => compareVersion(pod.version, max) === 0).sort(byKey)
}

const countShards = (state: RebalanceState): Map<string, number> => {
  const counts = new Map<string, number>(state.pods.map((pod) => [pod.key, 0]))
  for (const owner of state.assignments) {
    if (owner !== undefined && counts.has(owner)) counts.set(owner, counts.get(owner)! + 1)
  }
  return counts
}

const leastLoaded = (pods: ReadonlyArray<RebalancePod>, counts: Map<string, number>): RebalancePod | undefined => {
  let best: RebalancePod | undefined
  for (const pod of pods) {
    if (best === undefined || counts.get(pod.key)! < counts.get(best.key)!) best = pod
  }
  return best
}

const push = (map: Map<string, Array<number>>, key: string, shard: number) => {
  const list = map.get(key)
  if (list === undefined) map.set(key, [shard])
  else list.push(shard)
}

/**
 * Every unassigned shard (or shard whose owner is not a live pod) goes to the least-loaded pod of the
 * highest version, in shard order. Unbounded: unassigned shards are assigned at once.
 */
export const decideAssignmentsForUnassignedShards = (state: RebalanceState): RebalancePlan => {
  const plan: RebalancePlan = { assignments: new Map(), unassignments: new Map() }
  const eligible = eligiblePods(state.pods)
  if (eligible.length === 0) return plan
  const counts = countShards(state)
  for (let shard = 1; shard <= state.numberOfShards; shard++) {
    const owner = state.assignments[shard - 1]
    if (owner !== undefined && counts.has(owner)) continue
    const target = leastLoaded(eligible, counts)!
    counts.set(target.key, counts.get(target.key)! + 1)
    push(plan.assignments, target.key, shard)
  }
  return plan
}

/** The most shards one balancing round moves: `max(1, ceil(numberOfShards * rate))`. */
export const maxMovesPerRound = (numberOfShards: number, rate: number): number =>
  Math.max(1, Math.ceil(numberOfShards * rate - 1e-9))

/**
 * One balancing round: moves at most `maxMovesPerRound` shards, each from the most-loaded pod to the
 * least-loaded pod of the highest version, and only while that narrows a gap of 2 or more. Pods of an
 * older version never receive shards and give theirs up first (a rolling upgrade drains them).
 */
export const decideAssignmentsForUnbalancedShards = (state: RebalanceState, rate: number): RebalancePlan => {
  const plan: RebalancePlan = { assignments: new Map(), unassignments: new Map() }
  const eligible = eligiblePods(state.pods)
  if (eligible.length === 0) return plan
  const eligibleKeys = new Set(eligible.map((pod) => pod.key))
  const counts = countShards(state)
  const owned = new Map<string, Array<number>>()
  for (let shard = 1; shard <= state.numberOfShards; shard++) {
    const owner = state.assignments[shard - 1]
    if (owner !== undefined && counts.has(owner)) push(owned, owner, shard)
  }
  const older = state.pods.filter((pod) => !eligibleKeys.has(pod.key)).sort(byKey)
  const budget = maxMovesPerRound(state.numberOfShards, rate)
  for (let moves = 0; moves < budget; moves++) {
    const target = leastLoaded(eligible, counts)!
    let source: RebalancePod | undefined
    for (const pod of older) {
      if ((owned.get(pod.key)?.length ?? 0) > 0 && (source === undefined || counts.get(pod.key)! > counts.get(source.key)!)) {
        source = pod
      }
    }
    if (source === undefined) {
      for (const pod of eligible) {
        if (source === undefined || counts.get(pod.key)! > counts.get(source.key)!) source = pod
      }
      if (source === undefined || counts.get(source.key)! - counts.get(target.key)! < 2) break
    }
    const shard = owned.get(source.key)!.pop()!
    counts.set(source.key, counts.get(source.key)! - 1)
    counts.set(target.key, counts.get(target.key)! + 1)
    push(plan.unassignments, source.key, shard)
    push(plan.assignments, target.key, shard)
  }
  return plan
}
