"""Training of colvlm's bundled tiny LLaVA on Glyph-VQA, from scratch or from an exported
model, in stages (`python -m tools.train`; `tools.recipes.tiny_llava` chains the runs that made
the shipped model):

0. read (optional, `--read-steps`): the tower learns characters first, from synthetic text
   pages (lines of characters 8-32 px tall, every cell labelled with the character under its
   centre) mixed with scene crops around signs: dense supervision that per-scene signs, a few
   labelled cells each, do not give.
1. tower: the GlyphTower alone, with per-cell heads (object kind, colour, and the sign's text
   in three character slots) on global frames, ViCrop-sized crops and 2x2 tiles.
2. align: projector and language model on Glyph-VQA with the tower frozen.
2b. bind (optional, `--bind-steps`): as align, on 1-image colour and presence questions only
   (`--bind-kinds`): the decoder must pick the asked object out of the global frame, which the
   mixed stages, where such questions are a small share, were too short to teach.
3. joint: everything, on 1-image (global), 2-image (global + crop) and 5-image (global + 2x2
   tiles) prompts with the question kinds mixed, grounding questions included; the per-cell
   losses stay on so the tower keeps what stage 1 taught it (`--joint-tower-scale 0` freezes
   the tower instead).

`--att-weight` adds an attention loss to the VQA stages: at ViCrop's decoder layer, the last
prompt position's attention over the global image (heads averaged) is pulled towards the cells
of the question's evidence box, so that the model looks where it is asked, as ViCrop assumes a
VLM does. Without it the bind stage stayed at chance for 4300 steps; with it, it learnt.

Every view goes through the edge's own resize/pad and a JPEG round trip, as at run time.
Data are drawn from seeded streams indexed by step, so a run resumes (`--work` keeps a
checkpoint and a log) and repeats. Runs on CPU or CUDA (`--device`).

Modules: `data` (scenes, views, text pages, the scene pool), `targets` (per-cell heads, the
attention loss and its target), `prompts` (questions, images, token ids), `trainer` (stages,
optimizer, checkpoints), `export` (the model folder and training.json), `__main__` (flags).
"""
