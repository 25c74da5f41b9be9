# EVAD ViT-B (configs/evad_vitb_ava.py) on a subset of AVA's classes, with
# mmaction2's `custom_classes`: AVADataset keeps only these labels and
# renumbers them 1..len(custom_classes) (column 0 stays unused), AVAMetric
# maps the columns back to AVA ids and evaluates these classes only.
#
# Fine-tune an 81-class EVAD checkpoint:
#   mim train mmaction configs/evad_vitb_ava_custom_classes.py \
#       --cfg-options load_from=evad_vitb_ava.pth
# Its action classifier has another class count: ContextRefinementHead
# re-initialises the final classifier layers (one log line says so) and
# loads every other weight.
_base_ = ['evad_vitb_ava.py']

# ids of tools/data/ava/label_map.txt (AVA's 60 evaluated classes)
custom_classes = [1, 3, 5, 6, 7, 8, 10, 11, 12, 14, 64, 67, 68, 69, 70]
# names for the demos, in the order of custom_classes
classes = ('bend/bow (at the waist)', 'crouch/kneel', 'fall down', 'get up',
           'jump/leap', 'lie/sleep', 'run/jog', 'sit', 'stand', 'walk',
           'fight/hit (a person)', 'hand clap', 'hand shake', 'hand wave',
           'hug (a person)')
num_classes = len(custom_classes) + 1  # column 0 unused, as in mmaction2

model = dict(action_head=dict(num_classes=num_classes))

subset = dict(custom_classes=custom_classes, num_classes=num_classes)
train_dataloader = dict(dataset=subset)
val_dataloader = dict(dataset=subset)
test_dataloader = dict(dataset=subset)
val_evaluator = subset
test_evaluator = subset
