"""What the pretrained models learned: cluster quality against phone alignments, the frozen probes
(phone recognition, speaker identification), and the comparison of an experiment's arms over seeds.
"""
