"""Indices into MediaPipe Face Mesh's 468 points that preprocess and the generator's engines both use."""
import numpy as np

# Face Mesh index for each iBUG-68 point: jaw 0-16, brows 17-26, nose 27-35, eyes 36-47, lips 48-67.
MESH_TO_68 = np.array([
    127, 234, 93, 132, 58, 172, 136, 150, 152, 379, 365, 397, 288, 361, 323, 454, 356,
    70, 63, 105, 66, 107, 336, 296, 334, 293, 300,
    168, 197, 5, 4, 75, 97, 2, 326, 305,
    33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380,
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181,
    78, 82, 13, 312, 308, 317, 14, 87,
])

# Lip and face points the warp engine and the masks use.
UPPER_INNER_LIP = [78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308]
LOWER_INNER_LIP = [78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308]
MOUTH_LEFT, MOUTH_RIGHT = 61, 291
UPPER_LIP_TOP, LOWER_LIP_BOTTOM = 0, 17
UPPER_INNER, LOWER_INNER = 13, 14
NOSE_BOTTOM, CHIN = 2, 152
FACE_OVAL = [10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152,
             148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109]
NUM_POINTS = 468
