"""Fit gates offline on training-mix tensors (collect_mix.py: the first 120 train images), score them on the other
train images + the val split (held) and on collect.py's 6 validation photos x 7 evaluation degradations (val6).
Features: kind 0 local (the first gate), 1 + whole-image means, 2 + the restorer's global change (signed brightness,
contrast ratio, |R - x|), 3 = kind 1 + degradation descriptors (dark channel, brightness, saturation, blockiness,
noise level). Kind 3 is the study's first form of rvar.nn.fidelity.degradation_descriptors, not a copy: blockiness
across columns only, noise from the padded |Laplacian| of the gate's features. The fourth round ran kinds 1 and 3.
The feature code is the study's own (as in fit.py), kept as it ran so that it reproduces BENCHMARKS.md.

    python benchmarks/gate_study/fit_mix.py MIX.pt VAL6.pt
"""
import torch, torch.nn.functional as F, sys, collections
from rvar.eval.metrics import psnr_per_image
torch.manual_seed(0)
mix = torch.load(sys.argv[1]); val6 = torch.load(sys.argv[2])
train = mix['train'][:120]; held = mix['train'][120:] + mix['val']
def lp(t,k): r=k//2; return F.avg_pool2d(F.pad(t,(r,r,r,r),mode='replicate'),k,1)
LAP=torch.tensor([[0,1,0],[1,-4,1],[0,1,0]],dtype=torch.float32).view(1,1,3,3)
def feats(x,R,T,kind):
    d1=(R-T).abs().mean(1,keepdim=True); d2=(x-T).abs().mean(1,keepdim=True)
    hf=F.conv2d(F.pad(x.mean(1,keepdim=True),(1,1,1,1),mode='replicate'),LAP).abs()
    f=[torch.log(v+1e-3) for v in (lp(d1,3),lp(d1,15),lp(d2,3),lp(d2,15),lp(hf,3))]
    E=lambda v: v.expand_as(d1)
    if kind>=1:
        f+= [torch.log(v.mean((2,3),keepdim=True)+1e-3).expand_as(v) for v in (d1,d2,hf)]
        f+= [E(x.std((2,3),keepdim=True).mean(1,keepdim=True))]
    if kind>=2:
        d3=(R-x).abs().mean(1,keepdim=True)
        f+= [torch.log(lp(d3,15)+1e-3), E(torch.log(d3.mean((2,3),keepdim=True)+1e-3))]
        f+= [E((R.mean((2,3),keepdim=True)-x.mean((2,3),keepdim=True)).mean(1,keepdim=True))]
        f+= [E(torch.log((R.std((2,3),keepdim=True).mean(1,keepdim=True)+1e-3)/(x.std((2,3),keepdim=True).mean(1,keepdim=True)+1e-3)))]
        f+= [E(x.mean((2,3),keepdim=True).mean(1,keepdim=True))]
    if kind==3:
        dark=-F.max_pool2d(-x.min(1,keepdim=True)[0],15,1,7)   # dark channel (haze raises it)
        f+=[E(dark.mean((2,3),keepdim=True))]
        f+=[E(x.mean((1,2,3),keepdim=True))]  # brightness (low light)
        sat=(x.max(1,keepdim=True)[0]-x.min(1,keepdim=True)[0])
        f+=[E(sat.mean((2,3),keepdim=True))]
        dx=(x[...,:,1:]-x[...,:,:-1]).abs().mean((1,2))  # B, W-1
        idx=torch.arange(dx.shape[-1]); blk=(idx%8==7)
        f+=[E(torch.log((dx[:,blk].mean(1)+1e-3)/(dx[:,~blk].mean(1)+1e-3)).view(-1,1,1,1))]  # blockiness (JPEG)
        f+=[E(torch.log(hf.flatten(1).median(1)[0]+1e-3).view(-1,1,1,1))]  # noise level
    f.append(x.mean(1,keepdim=True))
    return torch.cat(f,1)
class Gate(torch.nn.Module):
    def __init__(s,n,kind,hidden):
        super().__init__(); s.kind=kind
        s.l=torch.nn.Sequential(torch.nn.Conv2d(n,hidden,1),torch.nn.GELU(),torch.nn.Conv2d(hidden,2,1)) if hidden else torch.nn.Conv2d(n,2,1)
    def forward(s,x,R,T):
        g=torch.sigmoid(s.l(feats(x,R,T,s.kind))); a,b=g[:,:1],g[:,1:]
        return R + a*(x-T) + b*(T-R)
def stack(rs,key): return torch.stack([r[key] for r in rs])
def fit(train,kind,hidden,lr=0.02,iters=600):
    X,Rr,Tt,C=[stack(train,k) for k in ('x','R','T','clean')]
    n=feats(X[:1],Rr[:1],Tt[:1],kind).shape[1]
    g=Gate(n,kind,hidden); opt=torch.optim.Adam(g.parameters(),lr=lr)
    for it in range(iters):
        i=torch.randint(0,len(X),(16,))
        out=g(X[i],Rr[i],Tt[i])
        l=torch.log(F.mse_loss(out,C[i],reduction='none').mean((1,2,3))+1e-4).mean()
        opt.zero_grad(); l.backward(); opt.step()
    return g
def rep(name,g,rs):
    per=collections.defaultdict(list)
    with torch.no_grad():
        for r in rs:
            out=g(r['x'][None],r['R'][None],r['T'][None])[0].clamp(0,1)
            p=lambda a: min(float(psnr_per_image(a[None],r['clean'][None])[0]),40)
            per[r['deg'].split(':')[0][:6]].append(p(out)-p(r['x']))
    allg=[v for l in per.values() for v in l]
    print(f"{name:22s} {sum(allg)/len(allg):+.2f} | "+' '.join(f"{k} {sum(v)/len(v):+.2f}" for k,v in sorted(per.items())),flush=True)
class Fix(torch.nn.Module):
    def __init__(s,a): super().__init__(); s.a=a
    def forward(s,x,R,T): return R+s.a*(x-T)
for a in (0.0,0.5): rep(f'fixed{a} held',Fix(a),held); rep(f'fixed{a} val6',Fix(a),val6)
for kind in (1,3):
    for hidden in (0,16):
        for lr in (0.003, 0.02):
            if hidden and lr>0.01: continue
            g=fit(train,kind,hidden,lr); rep(f'k{kind} h{hidden} lr{lr} held',g,held); rep(f'k{kind} h{hidden} lr{lr} val6',g,val6)
