"""stylelib: the tested helpers behind the open course on neural style transfer."""

from stylelib.images import image_grid, load_image, save_image, show, to_pil
from stylelib.profiles import get_profile, setup

__all__ = ["get_profile", "image_grid", "load_image", "save_image", "setup", "show", "to_pil"]
__version__ = "0.1.0"
