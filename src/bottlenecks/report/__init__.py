"""Reports: PNG figures (matplotlib, Agg canvas — never needs a display)."""

from .plots import image_grid_size, save_bar_chart, save_image_grid

__all__ = ["image_grid_size", "save_bar_chart", "save_image_grid"]
