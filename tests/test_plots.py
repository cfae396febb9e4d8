"""The plots the recipe writes, drawn from small tables: the cluster quality (a panel per metric, a
line per model over the layers) and the probes' layer weights (a panel per probe task, per arm the
mean over seeds as a line and their range shaded), and the pixel size of each PNG."""

import numpy as np
from helpers.images import png_size

from espnet_ils.analysis.label_quality import METRICS, plot_quality
from espnet_ils.analysis.probes import plot_layer_weights


def test_cluster_quality_has_a_panel_per_metric_and_a_line_per_model(tmp_path):
    ils = [
        {"layer": layer, "phone_purity": 0.1 * layer, "cluster_purity": 0.2, "pnmi": 0.05 * layer}
        for layer in range(4)
    ]
    table = {"ils": ils, "hubert": [dict(row, pnmi=0.0) for row in ils]}
    figure = plot_quality(table, tmp_path / "cluster_quality.png")
    assert [axis.get_title() for axis in figure.axes] == ["phone purity", "cluster purity", "pnmi"]
    for axis, metric in zip(figure.axes, METRICS):
        lines = axis.get_lines()
        assert [line.get_label() for line in lines] == ["ils", "hubert"]
        assert all(list(line.get_xdata()) == [0, 1, 2, 3] for line in lines)
        np.testing.assert_allclose(lines[0].get_ydata(), [row[metric] for row in ils])
    legend = figure.axes[0].get_legend()
    assert [text.get_text() for text in legend.get_texts()] == ["ils", "hubert"]
    # 3 panels of 4 x 3.2 inches at 120 dpi
    assert png_size(tmp_path / "cluster_quality.png") == (1440, 384)


def test_layer_weights_have_a_panel_per_task_and_the_mean_over_seeds_per_arm(tmp_path):
    weights = {
        "pr": {"ils": {0: [0.2, 0.3, 0.5], 1: [0.4, 0.3, 0.3]}, "hubert": {0: [0.1, 0.1, 0.8]}},
        "sid": {"ils": {0: [0.6, 0.2, 0.2]}, "hubert": {0: [0.3, 0.3, 0.4]}},
    }
    figure = plot_layer_weights(weights, tmp_path / "layer_weights.png")
    titles = [axis.get_title() for axis in figure.axes]
    assert titles == ["pr probe: learned layer weights", "sid probe: learned layer weights"]
    for axis in figure.axes:
        lines = axis.get_lines()
        assert [line.get_label().split()[0] for line in lines] == ["ils", "hubert"]
        assert all(list(line.get_xdata()) == [1, 2, 3] for line in lines)  # blocks 1..3
        assert len(axis.collections) == 2  # each arm's range over seeds, shaded
    ils_pr = figure.axes[0].get_lines()[0]
    assert ils_pr.get_label() == "ils (2 seeds)"
    np.testing.assert_allclose(ils_pr.get_ydata(), [0.3, 0.3, 0.4])
    # 2 panels of 4.5 x 3.2 inches at 120 dpi
    assert png_size(tmp_path / "layer_weights.png") == (1080, 384)
