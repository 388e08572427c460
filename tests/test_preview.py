"""Preview PNGs: each object outlined in its own colour, a stack's middle frame shown and named."""

import logging

import numpy as np
from PIL import Image

from unetkit.io import ImageMeta
from unetkit.predict.preview import PALETTE, label_colours, preview_frames, write_preview


def _outline_colours(rgb, labels, label):
    """The colours drawn on the outer ring of ``label``'s pixels."""
    from skimage.segmentation import find_boundaries

    edge = find_boundaries(labels, mode="inner") & (labels == label)
    return {tuple(c) for c in rgb[edge].tolist()}


def test_two_touching_objects_get_different_colours(tmp_path):
    labels = np.zeros((33, 37), np.uint16)
    labels[5:20, 5:15], labels[5:20, 15:25] = 1, 2  # one straight border: a merge would look the same
    png = write_preview(tmp_path / "p.png", np.zeros((33, 37), np.uint8), labels, ImageMeta("YX"))
    rgb = np.asarray(Image.open(png))
    one, two = _outline_colours(rgb, labels, 1), _outline_colours(rgb, labels, 2)
    assert len(one) == len(two) == 1 and one != two and one | two <= set(PALETTE)


def test_neighbours_whose_numbers_share_a_colour_are_told_apart():
    labels = np.zeros((33, 37), np.uint16)
    labels[5:20, 5:15], labels[5:20, 16:25] = 1, 1 + len(PALETTE)  # a one-pixel gap, same colour by number
    ids, colours = label_colours(labels)
    assert ids.tolist() == [1, 1 + len(PALETTE)] and colours[0] != colours[1]


def test_objects_far_apart_keep_the_colour_of_their_number():
    labels = np.zeros((33, 37), np.uint16)
    labels[2:6, 2:6], labels[25:30, 30:35] = 3, 3 + len(PALETTE)
    assert label_colours(labels)[1].tolist() == [2, 2]


def test_a_2d_preview_is_the_image_size_without_a_caption(tmp_path):
    labels = np.zeros((33, 37), np.uint16)
    labels[5:20, 5:15] = 1
    png = Image.open(write_preview(tmp_path / "p.png", np.zeros((33, 37), np.uint8), labels, ImageMeta("YX")))
    assert png.size == (37, 33) and png.text["Description"] == "the whole image"


def test_a_3_frame_stack_previews_frame_1_and_says_so(tmp_path, caplog):
    image = np.zeros((3, 33, 37), np.uint8)
    labels = np.zeros((3, 33, 37), np.uint16)
    for z in range(3):  # one object per frame, in a different place each time
        labels[z, 4 + 8 * z: 10 + 8 * z, 5:15] = 1
    with caplog.at_level(logging.INFO, logger="unetkit.predict.preview"):
        png = Image.open(write_preview(tmp_path / "p.png", image, labels, ImageMeta("ZYX")))
    assert png.text["Description"] == "frame 1 of 3 (Z)" and "frame 1 of 3 (Z)" in caplog.text
    band = png.height - 33  # the caption sits above the image
    rgb = np.asarray(png)[band:, :37]
    drawn = np.flatnonzero((rgb != 0).any(axis=(1, 2)))
    assert drawn.min() == 12 and drawn.max() == 17  # frame 1's object, rows 12..17
    assert (np.asarray(png)[:band] != 0).any()  # the caption is drawn


def test_time_lapse_of_volumes_previews_the_middle_of_each_and_the_first_channel():
    assert preview_frames(ImageMeta("TZCYX"), (5, 4, 2, 33, 37)) == {"T": (2, 5), "Z": (2, 4), "C": (0, 2)}
    assert preview_frames(ImageMeta("YXS"), (33, 37, 3)) == {}
