"""The ground floor: what every other room stands on; it imports nothing of the package above it.

`modelinfo` (ModelInfo, info), `sites` (hook names, selectors, sink specs), `data` (Dataset, windows, prompts,
the BOS policy), `corpora` (fetching and parsing corpora), `results` (tidy rows + provenance, journals),
`metrics`, `cache` (the cache directory, downloads, atomic writes), `errors`, `progress`, `offline`,
`families` (how model families above the zoo plug in).
"""
