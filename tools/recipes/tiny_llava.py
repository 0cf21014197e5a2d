"""The recipe of models/colvlm-tiny-llava: every run that made the shipped model, in order,
from random weights to the draft model (the model card tells what each stage taught it).

    python -m tools.recipes.tiny_llava --out models/colvlm-tiny-llava --work out/recipe
    python -m tools.recipes.tiny_llava --out out/model-camera --style camera   # retrain
    python -m tools.recipes.tiny_llava --dry-run                               # the stages

Four clean-scene generations of `tools.train` and thirteen camera rounds (each starting from
the previous one's export; the second generation ran as four commands in one work folder,
stopped and restarted with new flags), then the token codec, the gate threshold τ (`colvlm
eval --calibrate` on the calibration split), the view probe and the draft model. About 14 h on
a 2-core CPU, 8.5 h of it the camera rounds. A rebuild is close to the shipped weights, not
bit-equal: the first two generations ran with an image-first chat template and
the first one's tower schedule was cut short (the card says how). Stages that finished are
skipped on a rerun, so a stopped rebuild carries on. `--style camera|mix` retrains every stage
on camera-like scenes. `--start-at token-codec` runs only the stages after training on weights
already in OUT (how the shipped folder was made from the last camera round's export).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import sys

from tools.recipes.runner import RecipeRunner, Stage, versions, with_args

TRAIN = 'tools.train'
SEED = 1234  # every training generation; the tools' own seeds are written out below

# The second generation's flags (common to its four commands) and the fourth's.
GEN2 = dict(init_from='{work}/gen1/model', work='{work}/gen2/train', out='{work}/gen2/model',
            seed=SEED, read_steps=600, page_share=1.0, align_steps=200)
GEN2_EARLY_MIX = dict(kinds='text=0.35,color=0.25,presence=0.25,grounding=0.1,count=0.05',
                      joint_formats='1=0.45,2=0.45,5=0.1')
GEN4 = dict(seed=SEED, read_steps=0, tower_steps=0, align_steps=0, bind_steps=0,
            joint_tower_scale=0, att_weight=0.5,
            kinds='text=0.6,color=0.13,presence=0.13,grounding=0.14',
            joint_formats='1=0.3,2=0.65,5=0.05')

# The camera rounds (issue 18): each from the previous export, on a mix of clean and
# camera-style scenes; the tools' default seed unless a round names one. The first ran with 2
# threads (the older script name of tools.train), cam2-cam4 with 1. Rounds 5-9 were trials
# from cam4 that did not ship (the model card says what each taught); cam10 is the tenth,
# also from cam4, with a wider share of the tower's steps on whole scenes, colour weighted up
# and the fresh cell heads warmed up on a frozen tower first. cam11 repeats it at half the
# tower's learning rate; cam12 then trains the decoder alone (tower frozen) with reading
# weighted up. cam14 and cam15 repeat that pair from cam12 (colour weighted x3 in the tower
# round); cam13 was a decoder-only trial that did not ship. cam19 and cam20 repeat the pair
# from cam15 with a share of the signs in TrueType faces (STIX kept out to measure on); rounds
# 16-18 were TrueType trials that did not ship. cam22 and cam23 repeat the pair from cam20 with
# a larger TrueType share and a longer tower round (round 21 was a decoder-only trial that did
# not ship). cam27 and cam28 repeat the pair from cam23 with the shapes turned (the camera
# style's pose factor) and the signs' ink drawn 14-44 px tall instead of 14-32 (rounds 24-26
# were trials that did not ship); cam29 and cam30 repeat them from cam28. Those four posed every
# camera-like scene and lost colour on upright shapes, so cam31 and cam32, a shorter pair from
# cam30, pose only 40% of them. cam32 makes the shipped weights.
CAMERA_COMMON = dict(style='mix', read_steps=0, align_steps=0, bind_steps=0,
                     joint_tower_scale=0.3, joint_formats='1=0.4,2=0.55,5=0.05')
COLOUR_KINDS = 'text=0.3,color=0.3,presence=0.25,grounding=0.15'
READ_KINDS = 'text=0.45,color=0.25,presence=0.15,grounding=0.15'


def truetype(share: float) -> dict:
    """A round's TrueType flags: `share` of the camera-like scenes' signs (half the scenes in
    the mix style, so about half that share of all signs) lettered in DejaVu or Computer
    Modern faces; STIX is kept out, to measure on a family the model never saw."""
    return dict(truetype=share, typefaces='dejavu,computer-modern')


def pose_and_large_text(share: float, posed: float = 1.0) -> dict:
    """cam27 on: truetype(`share`) with every camera factor on, pose too (squares and
    triangles turned, in `posed` of the camera-like scenes), and sign ink up to 44 px, the
    larger text a ViCrop window shows."""
    flags = dict(**truetype(share), factors='all', text_height='14,44')
    return flags if posed == 1.0 else dict(flags, pose_share=posed)


def whole_scenes(color_weight: int, seed: int) -> dict:
    """A tower round's own flags from cam10 on: more tower steps on whole scenes, colour
    weighted up, the fresh cell heads warmed up on the frozen tower first."""
    return dict(tower_global_share=0.6, color_weight=color_weight, head_warmup=300, seed=seed)


def decoder_alone(seed: int) -> dict:
    """A decoder-only round's own flags: the tower frozen in joint, two-image prompts up."""
    return dict(joint_tower_scale=0, joint_formats='1=0.3,2=0.65,5=0.05', seed=seed)


CAMERA_ROUNDS = (  # name, init, threads, tower steps and lr, joint steps and lr, att, kinds
    ('cam1', 'gen4-b', 2, 600, 5e-4, 3500, 3e-4, 0.5,
     'text=0.4,color=0.2,presence=0.2,grounding=0.2'),
    ('cam2', 'cam1', 1, 1500, 3e-4, 3000, 2e-4, 0.5,
     'text=0.35,color=0.25,presence=0.25,grounding=0.15'),
    ('cam3', 'cam2', 1, 1000, 2e-4, 3000, 1.5e-4, 0.5, READ_KINDS),
    ('cam4', 'cam3', 1, 500, 2e-4, 2500, 1e-4, 0.8,  # colour and presence weighted up
     COLOUR_KINDS),
    ('cam10', 'cam4', 2, 2300, 6e-4, 1500, 1e-4, 0.8, COLOUR_KINDS, whole_scenes(2, 10010)),
    ('cam11', 'cam10', 2, 1500, 3e-4, 1200, 1e-4, 0.8,  # round 10 again at half the tower lr
     COLOUR_KINDS, whole_scenes(2, 11011)),
    ('cam12', 'cam11', 2, 0, None, 1500, 1e-4, 0.8,  # tower frozen, reading weighted up
     READ_KINDS, decoder_alone(12012)),
    ('cam14', 'cam12', 2, 1500, 3e-4, 1200, 1e-4, 0.8,  # cam11 again from cam12, colour x3
     COLOUR_KINDS, whole_scenes(3, 14014)),
    ('cam15', 'cam14', 2, 0, None, 1500, 1e-4, 0.8,  # cam12 again from cam14
     READ_KINDS, decoder_alone(15015)),
    ('cam19', 'cam15', 2, 1500, 3e-4, 1200, 1e-4, 0.8,  # cam14 again from cam15, TrueType
     COLOUR_KINDS, {**whole_scenes(3, 19019), **truetype(0.6)}),
    ('cam20', 'cam19', 2, 0, None, 1500, 1e-4, 0.8,  # cam15 again from cam19, TrueType
     READ_KINDS, {**decoder_alone(20020), **truetype(0.6)}),
    ('cam22', 'cam20', 2, 2000, 3e-4, 1200, 1e-4, 0.8,  # cam19 again, longer, more TrueType
     COLOUR_KINDS, {**whole_scenes(3, 22022), **truetype(0.8)}),
    ('cam23', 'cam22', 2, 0, None, 1500, 1e-4, 0.8,  # cam20 again from cam22
     READ_KINDS, {**decoder_alone(23023), **truetype(0.7)}),
    ('cam27', 'cam23', 2, 2000, 3e-4, 1200, 1e-4, 0.8,  # cam22 again, shapes turned
     COLOUR_KINDS, {**whole_scenes(3, 27026), **pose_and_large_text(0.8)}),
    ('cam28', 'cam27', 2, 0, None, 1500, 1e-4, 0.8,  # cam23 again from cam27
     READ_KINDS, {**decoder_alone(27027), **pose_and_large_text(0.7)}),
    ('cam29', 'cam28', 2, 2000, 3e-4, 1200, 1e-4, 0.8,  # cam27 again from cam28
     COLOUR_KINDS, {**whole_scenes(3, 29026), **pose_and_large_text(0.8)}),
    ('cam30', 'cam29', 2, 0, None, 1500, 1e-4, 0.8,  # cam28 again from cam29
     READ_KINDS, {**decoder_alone(29027), **pose_and_large_text(0.7)}),
    ('cam31', 'cam30', 2, 1200, 3e-4, 800, 1e-4, 0.8,  # shorter, 40% of scenes posed
     COLOUR_KINDS, {**whole_scenes(3, 31026), **pose_and_large_text(0.8, 0.4)}),
    ('cam32', 'cam31', 2, 0, None, 900, 1e-4, 0.8,  # cam30 shorter, 40% posed
     READ_KINDS, {**decoder_alone(31027), **pose_and_large_text(0.7, 0.4)}),
)


def camera_stage(name, init, threads, tower_steps, tower_lr, joint_steps, joint_lr, att, kinds,
                 extra=None, last=False) -> Stage:
    """One camera round (`extra`: its own further flags); the last writes the shipped
    weights to {out}."""
    work = '{work}/' + name
    out = '{out}' if last else work + '/model'
    flags = dict(init_from='{work}/' + init + '/model', **CAMERA_COMMON, threads=threads,
                 work=work + '/train', out=out, tower_steps=tower_steps, tower_lr=tower_lr,
                 joint_steps=joint_steps, joint_lr=joint_lr, att_weight=att, kinds=kinds)
    flags.update(extra or {})  # a round's own flags win over the common ones
    return Stage(name, TRAIN, flags,
                 outputs=(out + '/config.json',),
                 note=f'camera round {name[3:]}' + (': the weights' if last else ''))


CAMERA = [camera_stage(*r, last=i == len(CAMERA_ROUNDS) - 1)
          for i, r in enumerate(CAMERA_ROUNDS)]

STAGES = [
    Stage('gen1', TRAIN, dict(work='{work}/gen1/train', out='{work}/gen1/model', seed=SEED,
                              tower_steps=600, tower_lr=1e-3, align_steps=300,
                              joint_steps=4200),
          outputs=('{work}/gen1/model/config.json',), note='first copy, from scratch'),
    Stage('gen2-read', TRAIN, dict(**GEN2, tower_steps=200, tower_lr=5e-4, joint_steps=2400,
                                   **GEN2_EARLY_MIX, stop_at='tower:20'),
          outputs=('{work}/gen2/train/checkpoint.pt',), note='second copy: read 0-600'),
    Stage('gen2-tower', TRAIN, dict(**GEN2, tower_steps=400, tower_lr=1e-3, joint_steps=2400,
                                    **GEN2_EARLY_MIX, stop_at='joint:1000'),
          outputs=('{work}/gen2/train/checkpoint.pt',), note='tower, align, joint 0-1000'),
    Stage('gen2-joint', TRAIN, dict(**GEN2, tower_steps=400, tower_lr=1e-3, joint_steps=3000,
                                    kinds='text=0.6,color=0.15,presence=0.15,grounding=0.1',
                                    joint_formats='1=0.2,2=0.7,5=0.1', stop_at='joint:2200'),
          outputs=('{work}/gen2/train/checkpoint.pt',), note='joint 1000-2200'),
    Stage('gen2-export', TRAIN, dict(**GEN2, tower_steps=400, tower_lr=1e-3, joint_steps=5000,
                                     kinds='text=0.75,color=0.1,presence=0.1,grounding=0.05',
                                     joint_formats='1=0.15,2=0.8,5=0.05'),
          outputs=('{work}/gen2/model/config.json',), note='joint 2200-5000, export'),
    Stage('gen3', TRAIN, dict(init_from='{work}/gen2/model', work='{work}/gen3/train',
                              out='{work}/gen3/model', seed=SEED, read_steps=0, tower_steps=0,
                              align_steps=0, bind_steps=2500, joint_steps=3500,
                              joint_tower_scale=0, att_weight=0.5,
                              kinds='text=0.55,color=0.15,presence=0.15,grounding=0.15',
                              joint_formats='1=0.35,2=0.6,5=0.05'),
          outputs=('{work}/gen3/model/config.json',), note='third copy: bind, joint'),
    Stage('gen4-a', TRAIN, dict(init_from='{work}/gen3/model', work='{work}/gen4-a/train',
                                out='{work}/gen4-a/model', joint_steps=3000, joint_lr=3e-4,
                                **GEN4),
          outputs=('{work}/gen4-a/model/config.json',), note='fourth copy, first joint'),
    Stage('gen4-b', TRAIN, dict(init_from='{work}/gen4-a/model', work='{work}/gen4-b/train',
                                out='{work}/gen4-b/model', joint_steps=2500, joint_lr=2e-4,
                                **GEN4),
          outputs=('{work}/gen4-b/model/config.json',),
          note='fourth copy, second joint: the clean-scene model shipped until issue 18'),
    *CAMERA,
    Stage('token-codec', 'tools.fit_token_codec',
          dict(model='{out}', split='both', images=120, seed=777),
          outputs=('{out}/token_codec_tower.npz', '{out}/token_codec_projector.npz')),
    Stage('calibration-split', 'colvlm_bench.cli',
          dict(_=('dataset', 'glyphvqa', '{work}/calibration-split/data'), n_images=60,
               seed=778, style='camera'),
          outputs=('{work}/calibration-split/data/questions.jsonl',)),
    Stage('calibrate', 'colvlm_bench.cli',
          dict(_=('eval', '{work}/calibration-split/data'), calibrate=True, max_drop=0.5,
               vicrop_method='att', model='{out}', out='{work}/calibrate/eval'),
          outputs=('{work}/calibrate/eval/calibration.json',), note='the gate threshold τ'),
    Stage('view-probe', 'tools.fit_view_probe',
          dict(model='{out}', scenes=1500, held_out=300, epochs=60, seed=4242, threads=1),
          outputs=('{out}/view_probe.npz',)),
    Stage('draft', 'tools.make_draft_model',
          dict(model='{out}', out='{out}-draft', layers=0, distill_steps=1200, batch=16,
               seed=4321, threads=1),
          outputs=('{out}-draft/config.json',), note='the speculative-decoding draft'),
]

# Step counts and sizes of the smoke configuration (tests): one step of every stage that runs.
SMOKE_TRAIN = dict(batch=2, tower_batch=4, pool=4, pool_fill=2, refresh=1, warmup=1,
                   log_every=1, save_every=1000)
SMOKE_TOOLS = {'tools.fit_token_codec': dict(images=3),
               'tools.fit_view_probe': dict(scenes=4, held_out=1, epochs=1),
               'tools.make_draft_model': dict(distill_steps=1, batch=2)}
STEP_FLAGS = ('read_steps', 'tower_steps', 'align_steps', 'bind_steps', 'joint_steps')


def smoke(stages: list[Stage]) -> list[Stage]:
    """The same chain with one step per training stage, a few scenes for every fit."""
    from tools.train.__main__ import parse_args as train_defaults

    defaults = vars(train_defaults([]))
    small = []
    for stage in stages:
        if stage.tool == TRAIN:
            steps = {k: min(1, stage.args.get(k, defaults[k])) for k in STEP_FLAGS}
            stop = stage.args.get('stop_at')  # a stop after its stage's one step
            stage = with_args(stage, **steps, **SMOKE_TRAIN,
                              stop_at=stop and stop.split(':')[0] + ':1')
        elif stage.args.get('_', ('',))[0] == 'dataset':
            stage = with_args(stage, n_images=2)
        stage = with_args(stage, **SMOKE_TOOLS.get(stage.tool, {}))
        small.append(stage)
    return small


def styled(stages: list[Stage], style: str) -> list[Stage]:
    """Every training stage drawing scenes of `style`; 'clean' is the tools' default, so the
    shipped commands stay as they ran."""
    if style == 'clean':
        return stages
    return [with_args(s, style=style) if s.tool == TRAIN else s for s in stages]


def record(out: Path, stages: list[dict], work: Path, options: dict) -> dict:
    """The recipe's part of the model's training.json: every stage's command (placeholders
    kept), seconds and versions, and the calibrated threshold."""
    path = out / 'training.json'
    training = json.loads(path.read_text())
    calibration = json.loads((work / 'calibrate' / 'eval' / 'calibration.json').read_text())
    training['recipe'] = {'command': 'python -m tools.recipes.tiny_llava', **options,
                          'versions': versions(), 'stages': stages,
                          'calibrated': {'gate.threshold': calibration['threshold']}}
    path.write_text(json.dumps(training, indent=2) + '\n')
    write_settings(out, calibration['threshold'])
    return training['recipe']


def write_settings(out: Path, threshold: float) -> Path:
    """The model's colvlm.yaml: the calibrated τ, ViCrop 'att' (the tower is trained to look
    at the asked object) at the depth-scaled layer, as the shipped model has them."""
    from colvlm_models.settings import write_model_settings
    from colvlm_server.vicrop import choose_layer

    config = json.loads((out / 'config.json').read_text())
    layers = config.get('text_config', config)['num_hidden_layers']
    return write_model_settings(out, threshold, 'att', choose_layer(layers))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog='python -m tools.recipes.tiny_llava',
                                     description=__doc__.splitlines()[0])
    parser.add_argument('--out', default='out/colvlm-tiny-llava',
                        help='the model folder to make (its draft goes to OUT-draft)')
    parser.add_argument('--work', default=None,
                        help="the stages' scratch folder, where a rerun resumes "
                             '(default: OUT-work)')
    parser.add_argument('--style', choices=('clean', 'camera', 'mix'), default='clean',
                        help="the training scenes' look (tools.train --style)")
    parser.add_argument('--smoke', action='store_true',
                        help='one step per training stage and a few scenes per fit (tests)')
    parser.add_argument('--dry-run', action='store_true', help='print the stages and stop')
    parser.add_argument('--start-at', metavar='STAGE', default=None,
                        help="run from this stage on, taking OUT's weights as what the stages "
                             'before it made (recorded as seeded, not rerun)')
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stages = styled(smoke(STAGES) if args.smoke else STAGES, args.style)
    if args.dry_run:
        for stage in stages:
            print(f'{stage.name}: {stage.command()}')
        return 0
    out = Path(args.out)
    work = Path(args.work) if args.work else out.with_name(out.name + '-work')
    names = [s.name for s in stages]
    if args.start_at not in (None, *names):
        raise SystemExit(f'--start-at: no stage {args.start_at!r} (stages: {", ".join(names)})')
    first = names.index(args.start_at) if args.start_at else 0
    # Seeded stages are listed as the commands that made OUT's weights, without seconds.
    seeded = [{'name': s.name, 'command': s.command(), 'seeded': True} for s in stages[:first]]
    records = seeded + RecipeRunner(stages[first:], out, work).run()
    made = record(out, records, work, {'style': args.style, 'smoke': args.smoke,
                                       'start_at': args.start_at})
    print(f'{out}: made by {len(records)} stages; gate.threshold '
          f"{made['calibrated']['gate.threshold']:g} nats")
    return 0


if __name__ == '__main__':
    sys.exit(main())
