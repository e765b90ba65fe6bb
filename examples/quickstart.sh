#!/usr/bin/env bash
# Quickstart: synthetic NIfTI cohort -> HD5 -> T1 and T2 autoencoders and a T1/T2 DropFuse pair model ->
# latent tables -> comparison of how much age and sex signal each latent space carries.
# Usage: bash examples/quickstart.sh [OUTPUT_FOLDER]   (about 5 minutes on a 2-core CPU)
set -euo pipefail
out="${1:-quickstart_output}"
here="$(cd "$(dirname "$0")" && pwd)"
ml4ge="python ${here}/../recipes.py"
model=(--encoder_blocks conv_encode --decoder_blocks conv_decode --conv_layers 8 --dense_blocks 16 32
       --block_size 1 --dense_layers 32 --conv_x 3 --conv_y 3 --conv_z 3 --pool_x 2 --pool_y 2 --pool_z 2
       --activation relu --batch_size 4 --epochs 4 --patience 2 --learning_rate 1e-3 --num_workers 2)

python "${here}/make_quickstart_data.py" "${out}/data" --subjects 48
$ml4ge --mode tensorize --tensors "${out}/tensors" --manifest "${out}/data/manifest.csv" \
    --phenotype_csv "${out}/data/phenotypes.csv" --output_folder "${out}" --id tensorize

for tmap in t1_64 t2_64; do
    $ml4ge --mode train --tensors "${out}/tensors" --input_tensors "$tmap" --output_tensors "$tmap" \
        --merge_blocks --output_folder "${out}" --id "ae_${tmap}" "${model[@]}"
    $ml4ge --mode infer_encoders --tensors "${out}/tensors" --input_tensors "$tmap" \
        --model_file "${out}/ae_${tmap}/ae_${tmap}.keras" --output_folder "${out}" --id "ae_${tmap}"
done

$ml4ge --mode train --tensors "${out}/tensors" --input_tensors t1_64 t2_64 --output_tensors t1_64 t2_64 \
    --merge_blocks pair --pairs t1_64 t2_64 --pair_loss contrastive --pair_loss_weight 0.1 --pair_merge dropout \
    --output_folder "${out}" --id dropfuse "${model[@]}"
$ml4ge --mode infer_encoders --tensors "${out}/tensors" --input_tensors t1_64 t2_64 \
    --model_file "${out}/dropfuse/dropfuse.keras" --output_folder "${out}" --id dropfuse

$ml4ge --mode compare --output_folder "${out}" --id compare --phenotypes "${out}/data/phenotypes.csv" \
    --output_tensors age sex --folds 4 \
    --latent_tables "t1_ae=${out}/ae_t1_64/hidden_t1_64_ae_t1_64.tsv" \
                    "t2_ae=${out}/ae_t2_64/hidden_t2_64_ae_t2_64.tsv" \
                    "t1_dropfuse=${out}/dropfuse/hidden_t1_64_dropfuse.tsv" \
                    "t2_dropfuse=${out}/dropfuse/hidden_t2_64_dropfuse.tsv"
echo "Done: see ${out}/compare/compare_report.md"
