"""Case viewer: PET fused over MRI in three orthogonal planes, frame by frame."""

import numpy as np
import streamlit as st

from core.imaging.planes import sample_point, to_canonical
from core.viz.slices import OVERLAY_COLORMAPS, fusion_figure, orthogonal_planes
from core.errors import InputError
from pages._shared import choose_case, display_range, load_mask, load_series, repository, show_input_error

st.title("Case viewer")
repo = repository()
cases = {c.study_id: c for c in repo.list_cases()}
if not cases:
    st.info("No case to show yet: import images or generate the demo cohort on the Worklist.")
    st.stop()
study_id = choose_case(repo, cases)
if st.session_state.get("viewer_study") != study_id:  # a new case starts at its lesion, on its last frame
    for key in ("frame", "cursor_i", "cursor_j", "cursor_k"):
        st.session_state.pop(key, None)
    st.session_state["viewer_study"] = study_id
case = repo.get_case(study_id)
if case.synthetic:
    st.warning("Synthetic demo case: simulated images, not patient data.", icon=":material/science:")
backgrounds = case.backgrounds()
if not backgrounds:
    st.info("This case has no image series to show yet: import one on the Worklist.")
    st.stop()
pet_rec = case.pet
try:
    pet = load_series(repo.url, pet_rec.id) if pet_rec else None
    bg_rec = st.sidebar.selectbox("Background", backgrounds, format_func=lambda s: s.role, key="background")
    grid = to_canonical(load_series(repo.url, bg_rec.id))
    grid = grid.frame(grid.n_frames - 1) if grid.data.ndim == 4 else grid
except InputError as err:  # a stored file went missing or was damaged after import
    show_input_error(err)
    st.stop()

with st.sidebar:
    units = st.radio("PET units", ["SUV", "Bq/ml"] if pet is not None and pet.suv_available else ["Bq/ml"],
                     horizontal=True, key="units")
    if pet is not None and not pet.suv_available:
        st.caption(f"SUV unavailable: {pet.suv_unavailable_reason}.")
    scale = pet.suv_factor if units == "SUV" else 1.0
    pet_top = display_range(repo.url, pet_rec.id, 1.0, 99.9)[1] if pet is not None else 1.0
    pet_max = st.number_input(f"PET colour-bar max ({units})", min_value=0.0, key=f"pet_max_{units}",
                              value=float(f"{pet_top * scale:.3g}"))
    colormap = st.selectbox("Colour map", OVERLAY_COLORMAPS, key="colormap")
    opacity = st.slider("PET opacity", 0.0, 1.0, 0.5, 0.05, key="opacity")
    hide_below = st.slider("Hide PET below (% of colour-bar max)", 0, 100, 10, 5, key="hide_below")
    bg_range = display_range(repo.url, bg_rec.id)
    window = st.slider("Background window", *bg_range, bg_range, key=f"window_{bg_rec.id}")
tumour = case.mask_by_name("tumour")
centre = grid.mm_to_voxel(load_mask(repo.url, tumour.id).centroid_mm()) if tumour else np.array(grid.shape) / 2


@st.fragment
def show_planes():
    n_frames = pet.n_frames if pet is not None and pet.data.ndim == 4 else 1
    frame = st.slider("Frame", 1, n_frames, n_frames, key="frame") - 1 if n_frames > 1 else 0
    overlay = (pet.frame(frame) if n_frames > 1 else pet) if pet is not None else None
    if n_frames > 1:
        st.caption(f"Frame {frame + 1}/{n_frames}: {pet.frame_start_min[frame]:.2f}–{pet.frame_end_min[frame]:.2f} min p.i.")
    cursor = [col.slider(f"{axis} (voxel)", 0, n - 1, int(np.clip(round(c), 0, n - 1)), key=f"cursor_{axis}")
              for col, axis, n, c in zip(st.columns(3), "ijk", grid.shape, centre)]
    cursor_mm = grid.voxel_to_mm(cursor)
    fig = fusion_figure(orthogonal_planes(grid, cursor, overlay, overlay_scale=scale), background_range=window,
                        overlay_range=(0.0, pet_max), overlay_threshold=pet_max * hide_below / 100,
                        colormap=colormap, opacity=opacity, overlay_label=f"PET {units}",
                        background_label=bg_rec.role, cursor_mm=cursor_mm)
    st.plotly_chart(fig, config={"displaylogo": False})  # no key: a keyed chart redraws slower
    value = sample_point(overlay, cursor_mm) * scale if overlay is not None else float("nan")
    st.markdown(f"Cursor **({cursor_mm[0]:.1f}, {cursor_mm[1]:.1f}, {cursor_mm[2]:.1f}) mm** RAS · "
                f"PET **{value:.3g} {units}** · {bg_rec.role} {sample_point(grid, cursor_mm):.3g}")


show_planes()
