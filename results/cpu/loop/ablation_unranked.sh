#!/bin/bash
set -euo pipefail
# The ranking ablation of the README (run from the repository root after notebooks/teaching_loop.sh): distil on
# each problem's first sampled explanation instead of the best by RLT reward, then compare.
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false OMP_WAIT_POLICY=PASSIVE
L=outputs/cpu/loop
W=.venv/bin/workbench
.venv/bin/python -c "
import json
rows=[json.loads(l) for l in open('$L/gen.jsonl')]
first=[r for r in rows if r['sample']==0]
print(len(first))
open('$L/first.jsonl','w').write(''.join(json.dumps(r)+'\n' for r in first))"
date; $W distill build --input $L/first.jsonl --output $L/student_set_unranked.jsonl --max-tokens 512
date; $W train sft --recipe recipes/cpu/student_distill.yaml dataset=$L/student_set_unranked.jsonl output_dir=$L/student_unranked
EV="--overwrite --max-new-tokens 128 --temperature 0 --system-prompt-file $L/student_prompt.txt --batch-size 16"
date; $W eval run --benchmark math500 --data $L/test.jsonl --model $L/student_unranked --preset quick $EV --output $L/eval/arith_unranked
$W eval compare $L/eval/arith_base $L/eval/arith_unranked $L/eval/arith_rlt $L/eval/arith_traces
$W eval compare $L/eval/arith_unranked $L/eval/arith_rlt
date; echo ABLATION DONE
