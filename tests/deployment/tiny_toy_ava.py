# configs/evad_toy_ava.py (convolutional stem, pruning at rho 0.7, score
# threshold + NMS) with the position table made for 64-pixel frames, for
# fast export tests on 8 x 64 x 64 and 8 x 64 x 80 clips.
_base_ = ['../../configs/evad_toy_ava.py']

model = dict(backbone=dict(img_size=64))
