#!/bin/bash
# The CPU teaching loop behind the README's numbers (run from the repository root; ~35 min on 2 busy cores):
# the RLT teacher writes explanations for 64 training problems, they are ranked and built into a student set, the
# embedded model is fine-tuned on them (and, for comparison, on the problems' reference traces), and the three
# students are evaluated on the 64 held-out arithmetic problems and 40 countdown instances.
#   TEACHER=outputs/cpu/teacher_rlt notebooks/teaching_loop.sh      # results in outputs/cpu/loop/eval/*/summary.json
set -euo pipefail
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false OMP_WAIT_POLICY=PASSIVE
W=.venv/bin/workbench
PY=.venv/bin/python
L=outputs/cpu/loop
TEACHER=${TEACHER:-outputs/cpu/teacher_rlt}
RSTUDENT=${RSTUDENT:-outputs/cpu/student_sft}   # the reward student the teacher was trained against
[ -d "$RSTUDENT" ] || RSTUDENT=smollm2-135m
mkdir -p $L
rm -rf $L/gen.jsonl $L/eval   # generate and eval resume what they find: start afresh for this teacher
$PY -c "
from workbench import tutorial as t, formats
t.write_jsonl('$L/problems.jsonl', t.arith_problems('train', 192, 64))   # not in the teacher's SFT set
t.write_jsonl('$L/heldout.jsonl', t.arith_problems('heldout'))
open('$L/student_prompt.txt','w').write(formats.default_student_system_prompt(formats.STRATOS))"
date; $W generate --teacher $TEACHER --data $L/problems.jsonl --n 2 --max-new-tokens 96 --batch-size 16 --output $L/gen.jsonl
date; $W rank --teacher $TEACHER --student $RSTUDENT --teacher-tokenization generated --input $L/gen.jsonl --output $L/best.jsonl --keep 2
date; $W distill build --input $L/best.jsonl --output $L/student_set.jsonl --max-tokens 512
date; $W train sft --recipe recipes/cpu/student_distill.yaml dataset=$L/student_set.jsonl output_dir=$L/student_rlt
EV="--overwrite --max-new-tokens 128 --temperature 0 --system-prompt-file $L/student_prompt.txt --batch-size 16"
date; $W eval run --benchmark math500 --data $L/heldout.jsonl --model smollm2-135m --preset quick $EV --output $L/eval/arith_base
date; $W eval run --benchmark math500 --data $L/heldout.jsonl --model $L/student_rlt --preset quick $EV --output $L/eval/arith_rlt
date; $W train sft --recipe recipes/cpu/student_distill.yaml dataset=$L/problems.jsonl output_dir=$L/student_traces
date; $W eval run --benchmark math500 --data $L/heldout.jsonl --model $L/student_traces --preset quick $EV --output $L/eval/arith_traces
for m in base rlt traces; do
  model=$L/student_$m; [ $m = base ] && model=smollm2-135m
  date; $W eval run --benchmark countdown --limit 40 --model $model $EV --output $L/eval/countdown_$m
done
date; echo LOOP DONE
