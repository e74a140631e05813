"""Run every benchmark once (SmolLM2, 2-core CPU); each writes bench/results/NAME.json.

    make bench
"""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
for script in ("load_times.py", "probe_overhead.py", "intervention_overhead.py", "attribution.py", "streaming.py"):
    print(f"== {script}", flush=True)
    subprocess.run([sys.executable, str(HERE / script)], check=True, cwd=HERE)
