# Inherited by every backbone base in models/: makes MMDetection,
# MMSegmentation and MMPretrain import pvt_mm, which registers
# pvt_mm.PVTv1, pvt_mm.PVTv2 and pvt_mm.CvT; pvt_mm.engine registers the
# reliability hooks and makes MMEngine checkpoints load with weights_only.
custom_imports = dict(imports=['pvt_mm', 'pvt_mm.engine'],
                      allow_failed_imports=False)
