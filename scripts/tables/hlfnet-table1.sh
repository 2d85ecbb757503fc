#!/usr/bin/env bash
# HLF-Net paper 004, Table 1 (ISIC 2017 rows) on ISIC 2017 and PH2 5-fold, one budget for every row
# (scripts/tables/_lesion.sh): Unet-28, Res-Unet-28, HLF-Net only HFE, only LFE, HLF-Net, and
# HLF-Net with the paper's RGB + grayscale input. Results: benchmarks/results/hlfnet_table1_{isic2017,ph2}.{json,md}
#   scripts/run_experiments.sh hlfnet-table1            (restartable; SMOKE=1 for a 1-epoch check)
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/_lesion.sh"

row unet28 --set model.name=unet28
row res_unet28 --set model.name=res_unet28
row hlfnet_no_lfe --set model.name=hlfnet_no_lfe
row hlfnet_no_hfe --set model.name=hlfnet_no_hfe
row hlfnet --set model.name=hlfnet
row hlfnet_gray4 --set model.name=hlfnet --set data.in_channels=4
results hlfnet_table1 "Unet-28=unet28" "Res-Unet-28=res_unet28" "HLF-Net (only HFE)=hlfnet_no_lfe" \
    "HLF-Net (only LFE)=hlfnet_no_hfe" "HLF-Net=hlfnet" "HLF-Net, RGB + gray input=hlfnet_gray4"
log "hlfnet-table1 finished"
