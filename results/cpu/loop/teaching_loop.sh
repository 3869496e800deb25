#!/bin/bash
# The CPU teaching loop behind the README's numbers (run from the repository root; ~50 min on 2 quiet cores):
# the RLT teacher writes 4 explanations for each of 224 training problems it was not warmed up on, the reward keeps
# the best one per problem, and the embedded model is fine-tuned on them; for comparison, the embedded model is
# fine-tuned on the same problems' reference traces. The three students (before distillation, from the RLT teacher,
# from the reference traces) are evaluated greedily on the 256 generated test problems and 40 countdown instances,
# and compared problem by problem.
#   TEACHER=outputs/cpu/teacher_rlt notebooks/teaching_loop.sh      # results in outputs/cpu/loop/eval/*/summary.json
set -euo pipefail
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false OMP_WAIT_POLICY=PASSIVE
W=.venv/bin/workbench
PY=.venv/bin/python
L=${LOOP_DIR:-outputs/cpu/loop}
TEACHER=${TEACHER:-outputs/cpu/teacher_rlt}
RSTUDENT=${RSTUDENT:-outputs/cpu/student_sft}   # the reward student the teacher was trained against
[ -d "$RSTUDENT" ] || RSTUDENT=smollm2-135m
mkdir -p $L
rm -rf $L/gen.jsonl $L/eval   # generate and eval resume what they find: start afresh for this teacher
$PY -c "
from workbench import tutorial as t, formats
t.write_jsonl('$L/problems.jsonl', t.arith_problems('train', 192))   # the 224 not in the teacher's SFT set
t.write_jsonl('$L/test.jsonl', t.arith_problems('test'))             # 256 generated problems, never trained on
open('$L/student_prompt.txt','w').write(formats.default_student_system_prompt(formats.STRATOS))"
date; $W generate --teacher $TEACHER --data $L/problems.jsonl --n 4 --max-new-tokens 96 --batch-size 16 --output $L/gen.jsonl
date; $W rank --teacher $TEACHER --student $RSTUDENT --teacher-tokenization generated --trailing-text-penalty -1 \
        --input $L/gen.jsonl --output $L/best.jsonl --keep 1
date; $W distill build --input $L/best.jsonl --output $L/student_set.jsonl --max-tokens 512
date; $W train sft --recipe recipes/cpu/student_distill.yaml dataset=$L/student_set.jsonl output_dir=$L/student_rlt
date; $W train sft --recipe recipes/cpu/student_distill.yaml dataset=$L/problems.jsonl output_dir=$L/student_traces
EV="--overwrite --max-new-tokens 128 --temperature 0 --system-prompt-file $L/student_prompt.txt --batch-size 16"
for m in base rlt traces; do
  model=$L/student_$m; [ $m = base ] && model=smollm2-135m
  date; $W eval run --benchmark math500 --data $L/test.jsonl --model $model --preset quick $EV --output $L/eval/arith_$m
  date; $W eval run --benchmark countdown --limit 40 --model $model $EV --output $L/eval/countdown_$m
done
for t in arith countdown; do
  $W eval compare $L/eval/${t}_base $L/eval/${t}_rlt $L/eval/${t}_traces
done
date; echo LOOP DONE
